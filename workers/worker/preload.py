"""What the forkserver imports once for every analysis it forks (workers/worker/isolation.py).

transformers loads most of itself lazily, on first use: in a worker that ran analyses in-process
that cost was paid once, but each analysis child starts from the forkserver's state and would
pay it again (about 1.5 s a job on two cores: modeling_utils, torch._dynamo, the renaming
table). Importing and building them here pays it once per worker. The model-specific modules
(modeling_llama, ...) stay lazy: which architecture comes next is not known.
"""

import torch._dynamo  # noqa: F401 - transformers' model classes import it on first use
import transformers.modeling_utils  # noqa: F401
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401
from transformers.conversion_mapping import get_checkpoint_conversion_mapping

import workers.science.pipeline.lineage  # noqa: F401
import workers.science.pipeline.quantize  # noqa: F401
import workers.science.pipeline.sweep  # noqa: F401

# The table of checkpoint renamings transformers builds on first use (a thousand regular
# expressions, half a second): built once here, kept by every child.
get_checkpoint_conversion_mapping("llama")

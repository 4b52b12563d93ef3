"""The changes feed's answer, as published in the OpenAPI document."""

from typing import Any, Literal

from pydantic import BaseModel, Field


class Change(BaseModel):
    change: Literal["added", "updated", "retracted"] = Field(
        description="added: new since the cursor; updated: changed, or what it holds; "
        "retracted: one of its coordinates or super experts was retracted"
    )
    version: int = Field(description="The data version of the revision's last change")
    model_id: str
    revision: str
    model: dict[str, Any] = Field(
        description="The revision as it is now, in the JSON index's model_revision form"
    )


class ChangesPage(BaseModel):
    since: str = Field(description="The cursor this page was read after")
    data_version: int = Field(description="The data version the page was read at")
    changes: list[Change] = Field(description="Ordered by (version, revision row)")
    has_more: bool = Field(description="Whether more changes follow: ask again with `next`")
    next: str = Field(
        description="The cursor to read on with; on the last page, the data version read at "
        "(poll with it to get what changes next)"
    )

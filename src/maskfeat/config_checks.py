"""Thin re-export (saves import edits in the tasks): ranges live beside their defaults in maskfeat.schema."""
from .schema import AS_PRETRAINED, RULES, check_values  # noqa: F401
from .schema.spec import *  # noqa: F401,F403

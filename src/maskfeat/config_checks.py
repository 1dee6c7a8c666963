"""Thin re-export: the ranges live beside the defaults in maskfeat.schema."""
from .schema.spec import *  # noqa: F401,F403
from .schema.spec import AS_PRETRAINED, RULES, Rule, check_values, choice  # noqa: F401

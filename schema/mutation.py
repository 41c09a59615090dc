"""Root `Mutation`: the resources' mutations (`schema/fields/`), in the SDL's order."""

from __future__ import annotations

import strawberry

from schema.fields.assistants import AssistantMutations
from schema.fields.crons import CronMutations
from schema.fields.runs import RunMutations
from schema.fields.store import StoreMutations
from schema.fields.threads import ThreadMutations


@strawberry.type
class Mutation(CronMutations, StoreMutations, AssistantMutations, ThreadMutations, RunMutations):
    pass

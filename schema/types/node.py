"""The Relay `Node` interface: any assistant, thread, run or cron refetched by its id.

Node ids are the objects' own ids, not encoded global ids: every id lgql makes is a UUID, and
UUIDs do not collide across kinds, so `node(id:)` finds the object an `id` came from without
the id naming its type, and the `id` fields clients already store keep working. (A graph's
default assistant has a UUID derived from the graph id; it is unique in the same way.)
"""

from __future__ import annotations

import strawberry


@strawberry.interface(
    description="An object with an id unique across all types (a UUID): refetch it with "
    "`node(id:)` (Relay, urql Graphcache, Apollo normalised caches)."
)
class Node:
    id: strawberry.ID

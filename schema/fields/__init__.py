"""Root fields, one module per resource: each holds a `<Resource>Queries` and/or
`<Resource>Mutations` mixin of thin resolvers over that resource's service; `schema/query.py`
and `schema/mutation.py` compose them (their order is the order of the fields in the SDL)."""

"""Finding apps: a selector resolved against the catalog, matches ranked and grouped, and the
candidate sets a search leaves for paging and picking. Imports `catalog`, never `run`."""

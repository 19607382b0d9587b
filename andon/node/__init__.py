"""One andon process, wired: its parts (store, supervisor, dispatch, service) in order
(parts), and the processes built from them: `andon serve` (serve), `andon worker`
(worker), `andon db upgrade` (database)."""

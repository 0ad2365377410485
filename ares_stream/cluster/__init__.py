"""Past one machine, on Ray: one actor per shard, booster training as Ray tasks.

``ares-stream cluster`` (:mod:`ares_stream.cluster.runner`) places one :class:`ShardActor`
(:mod:`ares_stream.cluster.actor`) per shard on a Ray cluster — an existing one
(``--address``) or a local one started for it. Each actor runs its shard's daemon — the same
``ares-stream run --shard K/N`` as under systemd, in a process of its own that dies with the
actor — and Ray restarts a dead actor (``max_restarts``), whose new daemon resumes from the
shard's checkpoint and backfills what it missed. With ``[batch] executor = "ray"`` the shard's
training and validation jobs run as Ray tasks anywhere on the cluster
(:mod:`ares_stream.batch.rayexec`). Ray is imported only here and only when used.
"""

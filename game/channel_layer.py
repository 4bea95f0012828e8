"""channels-redis's core layer with fewer Redis round trips per broadcast (one Redis host).

The default channel layer (`CHANNEL_LAYER_BACKEND`). It keeps channels-redis's storage —
a sorted set per channel key, `capacity`, `expiry`, `group_expiry`, its serializer and the
"over capacity" log line that `nuxtest_channel_layer_dropped_messages_total` counts — and
changes how many round trips each message takes:

- `group_send`: the group's expiry and read in one pipeline, then one script that expires,
  checks capacity and queues on every channel key (channels-redis: four round trips, the
  script sent in full each time).
- receiving on this process's channels (the fan-out hub's: game/fanout.py): up to 64
  queued messages in one `ZPOPMIN`, and a blocking `BZPOPMIN` only when none is queued
  (channels-redis: four round trips per message — a script, the pop, and a backup copy
  written then deleted so that a receive cancelled halfway loses nothing). The only
  receiver here is the hub, which is cancelled only when its process stops; what it had
  popped then is lost with the process's connections anyway.

With several Redis hosts (sharding) both fall back to channels-redis's own code.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from channels_redis.core import RedisChannelLayer as _CoreLayer

# channels-redis's own logger: its "over capacity" line is what the drop counter reads.
_layer_logger = logging.getLogger("channels_redis.core")

_GROUP_SEND_LUA = """
local n = #KEYS
local now, expiry, cutoff = ARGV[2 * n + 1], ARGV[2 * n + 2], ARGV[2 * n + 3]
local over_capacity = 0
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, cutoff)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + n]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""

RECEIVE_BATCH = 64


class RedisChannelLayer(_CoreLayer):
    """channels_redis.core.RedisChannelLayer, in fewer round trips (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Messages popped from a process channel's key and not yet handed out, per key.
        self._popped: collections.defaultdict[str, collections.deque[bytes]] = collections.defaultdict(
            collections.deque
        )
        self._group_send_scripts: dict[int, Any] = {}

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send `message` to every channel of `group` (two round trips)."""
        if self.ring_size != 1:
            await super().group_send(group, message)
            return
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(0)
        now = time.time()
        async with connection.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, min=0, max=int(now) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        channel_names = [m.decode("utf8") for m in members]
        if not channel_names:
            return
        by_connection, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        keys = by_connection[0]
        args = [messages[k] for k in keys] + [capacities[k] for k in keys]
        args += [now, self.expiry, int(now) - int(self.expiry)]
        over = await self._group_send_script(connection)(keys=keys, args=args)
        if over > 0:
            _layer_logger.info("%s of %s channels over capacity in group %s", over, len(channel_names), group)

    def _group_send_script(self, connection: Any) -> Any:
        script = self._group_send_scripts.get(id(connection))
        if script is None or script.registered_client is not connection:
            script = self._group_send_scripts[id(connection)] = connection.register_script(_GROUP_SEND_LUA)
        return script

    async def receive_single(self, channel: str) -> tuple[Any, dict[str, Any]]:
        """The next message of `channel`; a process channel's come in batches."""
        if "!" not in channel or self.ring_size != 1:
            return await super().receive_single(channel)
        assert self.require_valid_channel_name(channel, receive=True), "Channel name invalid"
        channel_key = self.prefix + channel
        popped = self._popped[channel_key]
        connection = self.connection(0)
        while not popped:
            batch = await connection.zpopmin(channel_key, count=RECEIVE_BATCH)
            if batch:
                popped.extend(member for member, _ in batch)
                break
            result = await connection.bzpopmin(channel_key, timeout=self.brpop_timeout)
            if result is not None:
                popped.append(result[1])
        message = self.deserialize(popped.popleft())
        if "__asgi_channel__" in message:
            channel = message.pop("__asgi_channel__")
        return channel, message

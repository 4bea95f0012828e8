#!/bin/sh
# Replace a scalable compose service's containers with the new release's, new ones first:
# start as many new containers beside the old ones, wait until they are healthy, then stop
# the old ones (SIGTERM: a Celery worker's warm shutdown lets its running tasks finish) and
# remove them. Used by `make deploy` for the Celery workers: the game's timers are taken
# by every worker's pump, so with the new workers up first no deadline waits for a worker
# (replaced one after the other, rounds closed up to 5 s late: README, "Deploy").
# If the new containers never become healthy, they are removed and the old ones keep running.
# A pre-stop command, if given, runs in each old container before its SIGTERM (for the
# workers: `python -m nuxtest.worker_drain`, so that a stopping worker holds no task of the
# queue through its shutdown); if it fails, the old container is stopped all the same.
# The pattern of docker-rollout (github.com/wowu/docker-rollout), without its plugin.
#
#   COMPOSE="docker compose -f docker-compose.yml" deploy/rollout.sh worker ["pre-stop command"]
#   (STOP_TIMEOUT: seconds each old container gets after its SIGTERM, 60 as compose's grace)
set -eu

service=${1:?usage: deploy/rollout.sh SERVICE ["PRE-STOP COMMAND"]}
pre_stop=${2:-}
stop_timeout=${STOP_TIMEOUT:-60}
compose=${COMPOSE:-docker compose}

# shellcheck disable=SC2086  # $compose is a command line
old=$($compose ps --quiet "$service")
count=$(echo "$old" | grep -c . || true)
if [ "$count" -eq 0 ]; then
    echo "rollout: no $service running; starting it"
    $compose up --detach --no-deps --wait "$service"
    exit 0
fi

echo "rollout: $count old $service container(s); starting $count new beside them"
if ! $compose up --detach --no-deps --no-recreate --scale "$service=$((count * 2))" --wait "$service"; then
    new=$($compose ps --quiet "$service" | grep -v -x -F "$old" || true)
    echo "rollout: the new $service containers are not healthy; removing them, the old ones stay" >&2
    if [ -n "$new" ]; then
        # shellcheck disable=SC2086  # one id per word
        docker stop --time "$stop_timeout" $new >/dev/null
        # shellcheck disable=SC2086
        docker rm $new >/dev/null
    fi
    exit 1
fi

if [ -n "$pre_stop" ]; then
    echo "rollout: new $service healthy; running \"$pre_stop\" in the old ones"
    pids=""
    for id in $old; do
        docker exec "$id" sh -c "$pre_stop" &
        pids="$pids $!"
    done
    failed=0
    for pid in $pids; do
        wait "$pid" || failed=1
    done
    if [ "$failed" -ne 0 ]; then
        echo "rollout: the pre-stop command failed in an old $service; stopping it all the same" >&2
    fi
fi
echo "rollout: stopping the old $service containers (up to ${stop_timeout}s each)"
# shellcheck disable=SC2086  # one id per word
docker stop --time "$stop_timeout" $old >/dev/null
# shellcheck disable=SC2086
docker rm $old >/dev/null
echo "rollout: $service replaced"

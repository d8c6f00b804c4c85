# Sourced by the cluster drill and benchmark after scripts/drill-env.sh: three RabbitMQ nodes
# on this machine from Debian's rabbitmq-server, with node names, ports and data directories of
# their own, loopback only, no plugins.
#   start_cluster        starts and clusters them; sets cluster_urls (queue.url for all three)
#   stop_cluster         stops every node started (call it from before_cleanup)
#   nodes, ports, host, ctl
host=$(hostname -s)
# The server's own scripts, run as this user with this user's Erlang cookie (the packaged
# wrappers switch to the rabbitmq user and its cookie).
ctl=/usr/lib/rabbitmq/bin/rabbitmqctl
server=/usr/lib/rabbitmq/bin/rabbitmq-server
nodes=(billpush-c1 billpush-c2 billpush-c3)
ports=(5791 5792 5793)
cluster=$work/cluster

start_node() {
  local i=$1 dir=$cluster/${nodes[$1]}
  mkdir -p "$dir"
  env RABBITMQ_NODENAME="${nodes[$i]}@$host" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="${ports[$i]}" RABBITMQ_DIST_PORT=$((ports[i] + 20000)) \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$cluster/plugins" RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
    "$server" >"$dir/server.log" 2>&1 &
  "$ctl" -q -n "${nodes[$i]}@$host" wait "$dir/pid" --timeout 120 >/dev/null
}

start_cluster() {
  mkdir -p "$cluster"
  echo "[]." >"$cluster/plugins"
  for i in 0 1 2; do start_node "$i"; done
  for i in 1 2; do
    for step in stop_app reset "join_cluster ${nodes[0]}@$host" start_app; do
      # shellcheck disable=SC2086 # the step is a command and its argument
      "$ctl" -q -n "${nodes[$i]}@$host" $step >>"$cluster/ctl.log" 2>&1
    done
  done
  local running
  running=$("$ctl" -q -n "${nodes[0]}@$host" cluster_status --formatter json |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))')
  [ "$running" = 3 ] || { echo "only $running of 3 RabbitMQ nodes clustered" >&2; return 1; }
  cluster_urls=""
  for node_port in "${ports[@]}"; do cluster_urls+="amqp://guest:guest@127.0.0.1:$node_port/%2f,"; done
  cluster_urls=${cluster_urls%,}
}

stop_cluster() {
  for node in "${nodes[@]}"; do "$ctl" -q -n "$node@$host" stop >/dev/null 2>&1 || true; done
}

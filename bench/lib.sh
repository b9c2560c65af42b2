# Shell functions sourced by bench/compare.sh and bench/footprint.sh.

# need "PACKAGES" TOOL...: exits, saying how to get them, if any TOOL is missing. Sets
# NGINX_BIN (Debian's nginx is in /usr/sbin, which a user's PATH may lack).
need() {
  local packages=$1 missing="" tool
  shift
  NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
  for tool in "$@"; do
    case $tool in
      nginx) [ -x "$NGINX_BIN" ] || missing="$missing nginx" ;;
      *) command -v "$tool" >/dev/null || missing="$missing $tool" ;;
    esac
  done
  if [ -n "$missing" ]; then
    echo "$0 needs:$missing. On Debian: apt-get install $packages" >&2
    exit 1
  fi
}

# Builds the two release binaries the scripts run: the backend, and the gateway example as a
# binary of its own (bench/gateway). Built as an example, the gateway would get the
# dev-dependencies' features, Tokio's test-util among them, which a gateway depending on this
# crate does not. Two builds: one would unify their features.
build_bench() {
  cargo build --release --quiet --example bench_backend
  cargo build --release --quiet -p tower-upstream-gateway-bench
}

# wait_port HOST:PORT [SECONDS]: waits until something accepts connections there (default
# 5 s), or exits.
wait_port() {
  local tries=$((${2:-5} * 20))
  for _ in $(seq "$tries"); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  exit 1
}

# nginx_conf DIR WORKERS LISTEN PEER1 PEER2: writes DIR/nginx.conf, the seed's load balancer
# (a weighted upstream of two peers with keep-alive, proxy_set_header Host and X-Real-IP) with
# its logs, pid file and temp paths under DIR and no access log.
nginx_conf() {
  local dir=$1
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<CONF
worker_processes $2;
error_log $dir/logs/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
  upstream tserver { server $4 weight=1; server $5 weight=1; keepalive 64; }
  server {
    listen $3 backlog=4096;
    location / {
      proxy_pass http://tserver;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Real-IP \$remote_addr;
    }
  }
}
CONF
}

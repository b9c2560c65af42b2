# Sourced by bench/compare.sh and bench/footprint.sh.
#
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

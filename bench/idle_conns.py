#!/usr/bin/env python3
"""Opens N idle TCP connections to HOST:PORT (from many 127.x.y.z source addresses, so that
no source runs out of ports), holds them until stdin closes, and reports how many are open.

usage: idle_conns.py HOST PORT N
"""
import resource
import socket
import sys

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1024), hard))

conns = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((f"127.0.{2 + i // 250}.{1 + i % 250}", 0))
    s.connect((host, port))
    conns.append(s)
print(f"open {len(conns)}", flush=True)
sys.stdin.read()

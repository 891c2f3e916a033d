#!/usr/bin/env python3
"""CPU and wall time of one append + fsync, for a log that grows its file and for one written over zeros.

Usage: python3 bench/scripts/append-fsync.py [DIR] [COUNT] [SIZE]   (defaults: /tmp, 3000, 13312 bytes)

"grow" appends at the end of the file (each fsync commits a new size and newly allocated blocks); "zeros" first
writes and fsyncs zeros over the whole range, then appends over them (the fsync has only data to write), as
AppendReserve does for the Raft log and the volume WAL. CPU is the whole machine's busy time from /proc/stat
(kernel threads and interrupts included), divided by COUNT: run it on an otherwise quiet machine.
"""
import os, sys, time

def busy_ticks():
    with open('/proc/stat') as f:
        fields = list(map(int, f.readline().split()[1:]))
    return sum(fields) - fields[3] - fields[4]  # minus idle and iowait

def run(directory, mode, count, size, sync):
    path = os.path.join(directory, f'append-fsync-{os.getpid()}-{mode}')
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if mode == 'zeros':
            zeros = bytes(1 << 20)
            for _ in range(count * size // len(zeros) + 1):
                os.write(fd, zeros)
            os.fsync(fd)
        record = os.urandom(size)
        ticks, started = busy_ticks(), time.monotonic()
        for i in range(count):
            os.pwrite(fd, record, i * size)
            sync(fd)
        wall, ticks = time.monotonic() - started, busy_ticks() - ticks
    finally:
        os.close(fd)
        os.unlink(path)
    cpu_us = 1e6 * ticks / os.sysconf('SC_CLK_TCK') / count
    print(f'{mode:5} {sync.__name__:9} {1e6 * wall / count:7.0f} us wall {cpu_us:7.0f} us cpu per append')

def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else '/tmp'
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 13312
    for _ in range(3):
        for mode in ('grow', 'zeros'):
            for sync in (os.fsync, os.fdatasync):
                run(directory, mode, count, size, sync)

if __name__ == '__main__':
    main()

"""Side-by-side measurements of the PBFT methods; run with ``python -m benchmarks run``.

Every measurement runs in a child process of its own (a fresh peak RSS, no allocator state carried
over), results are written as JSON with the machine, date, command and library versions, and the
markdown tables in benchmarks/README.md are generated from that JSON.
"""

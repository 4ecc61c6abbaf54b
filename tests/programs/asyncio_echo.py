"""An asyncio echo server and client over loopback TCP.

    asyncio_echo.py server PORT_FILE CONNECTIONS   serve, write the port, exit after CONNECTIONS
                                                   (PORT_FILE "-": the port is the first line out)
    asyncio_echo.py client PORT CONNECTIONS MESSAGES
    asyncio_echo.py both CONNECTIONS MESSAGES      both in one process

Prints a transcript that does not depend on timing: what each side saw.
"""
import asyncio
import hashlib
import sys


async def handle(reader, writer, done):
    total = hashlib.sha256()
    n = 0
    while True:
        line = await reader.readline()
        if not line:
            break
        total.update(line)
        n += 1
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()
    done.append((n, total.hexdigest()[:16]))


async def serve(port_file, connections):
    done = []
    finished = asyncio.Event()

    async def on_conn(r, w):
        await handle(r, w, done)
        if len(done) == connections:
            finished.set()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    if port_file == "-":
        print(port, flush=True)
    elif port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os
        os.rename(port_file + ".tmp", port_file)
    return server, port, finished, done


async def one_client(port, i, messages):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    h = hashlib.sha256()
    for m in range(messages):
        payload = f"connection {i} message {m} " + "x" * (m * 37 % 2000) + "\n"
        writer.write(payload.encode())
        await writer.drain()
        back = await reader.readline()
        if back != payload.upper().encode():
            raise SystemExit(f"connection {i}: wrong echo for message {m}")
        h.update(back)
    writer.write_eof()
    rest = await reader.read()
    writer.close()
    await writer.wait_closed()
    return h.hexdigest()[:16], rest


async def clients(port, connections, messages):
    results = await asyncio.gather(*(one_client(port, i, messages) for i in range(connections)))
    digests = hashlib.sha256("".join(d for d, _ in results).encode()).hexdigest()[:16]
    print(f"client: {connections} connections x {messages} echoes ok, digest {digests}, "
          f"trailing bytes {sum(len(r) for _, r in results)}")


async def main():
    mode = sys.argv[1]
    if mode == "server":
        server, _, finished, done = await serve(sys.argv[2], int(sys.argv[3]))
        async with server:
            await finished.wait()
        print(f"server: {len(done)} connections, {sum(n for n, _ in done)} lines")
    elif mode == "client":
        await clients(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "both":
        connections, messages = int(sys.argv[2]), int(sys.argv[3])
        server, port, finished, done = await serve(None, connections)
        async with server:
            await clients(port, connections, messages)
            await finished.wait()
        print(f"server: {len(done)} connections, {sum(n for n, _ in done)} lines")
    else:
        raise SystemExit(f"unknown mode {mode}")


asyncio.run(main())

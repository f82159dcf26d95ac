"""CPU and round trip per Modbus TCP request: our lean client (plc/modbus_tcp.py) against pymodbus's
client, both on the same pymodbus server (its own process) in the same run.

    python bench/modbus_client.py [--requests 5000]

The timing loop makes two reads per poll (discrete inputs, the encoder's input registers) at up to
1 kHz, so the client's CPU per request is most of the timing process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.tables import pct, table  # noqa: E402


def server_main(conn) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    async def main():
        dev = SimDevice(id=1, simdata=([SimData(0, count=64, values=False, datatype=DataType.BITS)],
                                       [SimData(0, count=64, values=False, datatype=DataType.BITS)],
                                       [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
                                       [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)]))
        server = ModbusTcpServer(dev, address=("127.0.0.1", 0))
        await server.serve_forever(background=True)
        conn.send(server.transport.sockets[0].getsockname()[1])
        while not conn.poll():
            await asyncio.sleep(0.05)
        await server.shutdown()

    asyncio.run(main())


async def poll_with(client, n: int) -> tuple[float, list[float]]:
    """n polls of the timing loop's shape (two reads each): CPU seconds of this process, round trips."""
    rtts = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        await client.read_discrete_inputs(0, count=24, device_id=1)
        await client.read_input_registers(0, count=2, device_id=1)
        rtts.append((time.perf_counter() - t0) * 1000)
    return time.process_time() - cpu0, rtts


async def run_clients(port: int, n: int) -> list[list]:
    from pymodbus.client import AsyncModbusTcpClient

    from sorter.plc.modbus_tcp import ModbusTcpClient
    rows = []
    for _ in range(2):  # twice each, interleaved, so a burst of machine noise hits both
        for name, make in (("pymodbus 3.16 AsyncModbusTcpClient", lambda: AsyncModbusTcpClient(
                "127.0.0.1", port=port, timeout=1, retries=0)),
                ("lean client (plc/modbus_tcp.py)", lambda: ModbusTcpClient("127.0.0.1", port, timeout=1))):
            c = make()
            await c.connect()
            await poll_with(c, 200)  # warm up
            cpu, rtts = await poll_with(c, n)
            c.close()
            rows.append([name, n, f"{cpu / n * 1e6:.0f}", f"{cpu / n * 1000 * 100:.1f} %",
                         f"{pct(rtts, 50):.3f}", f"{pct(rtts, 99):.3f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=5000, help="polls per client (two reads each)")
    a = ap.parse_args()
    parent, child = mp.Pipe()
    p = mp.Process(target=server_main, args=(child,), daemon=True)
    p.start()
    try:
        port = parent.recv()
        rows = asyncio.run(run_clients(port, a.requests))
    finally:
        parent.send("stop")
        p.join(5)
        if p.is_alive():
            p.kill()
    table("Modbus TCP client cost, same pymodbus server", ["client", "polls", "client CPU µs per poll", "CPU at 1 kHz poll", "poll p50 ms", "poll p99 ms"],
          rows)


if __name__ == "__main__":
    main()

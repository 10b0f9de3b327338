#!/usr/bin/env python3
"""One burst of Messages requests through the official Anthropic SDK.

    python bench/limits_burst.py --base-url http://127.0.0.1:PORT \
        [--n 100] [--concurrency 100] [--max-retries N] [--timeout SECS]

Sends N non-streaming requests, at most CONCURRENCY at a time, with one
AsyncAnthropic client (the SDK's own retries: its default unless
--max-retries is given), and prints one JSON line: the batch's wall time,
how many succeeded, and the failures the client saw, by HTTP status (with
the last answer's x-should-retry, when it had one) or exception class.
"""

import argparse
import asyncio
import collections
import json
import time

import anthropic


async def burst(args: argparse.Namespace) -> dict:
    kwargs = {"base_url": args.base_url, "api_key": "sk-ant-bench-not-a-key"}
    if args.max_retries is not None:
        kwargs["max_retries"] = args.max_retries
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    client = anthropic.AsyncAnthropic(**kwargs)
    gate = asyncio.Semaphore(args.concurrency)
    failures: collections.Counter = collections.Counter()
    ok = 0

    async def one() -> None:
        nonlocal ok
        async with gate:
            try:
                await client.messages.create(
                    model="claude-sonnet-4-5",
                    max_tokens=64,
                    messages=[{"role": "user", "content": "hi"}],
                )
                ok += 1
            except anthropic.APIStatusError as e:
                verdict = e.response.headers.get("x-should-retry")
                key = str(e.status_code)
                failures[key if verdict is None else f"{key} should-retry={verdict}"] += 1
            except anthropic.APIError as e:
                failures[type(e).__name__] += 1

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(args.n)))
    wall = time.monotonic() - started
    await client.close()
    return {
        "wall_s": round(wall, 2),
        "ok": ok,
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "max_retries": client.max_retries,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--max-retries", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None)
    print(json.dumps(asyncio.run(burst(p.parse_args()))))


if __name__ == "__main__":
    main()

"""The official Anthropic Python SDK, pointed at levee by ANTHROPIC_BASE_URL.

Usage: client.py plain|stream|overloaded|two-models
Prints one JSON line describing what the SDK returned or raised.
"""

import json
import sys

import anthropic


def main(mode: str) -> None:
    # The SDK's defaults (2 retries): levee must make them unnecessary.
    client = anthropic.Anthropic()
    request = dict(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "Say hello."}],
    )
    if mode == "plain":
        message = client.messages.create(**request)
        print(json.dumps({"text": message.content[0].text, "output_tokens": message.usage.output_tokens}))
    elif mode == "stream":
        with client.messages.stream(**request) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        print(json.dumps({"text": text, "stop_reason": final.stop_reason}))
    elif mode == "overloaded":
        try:
            client.messages.create(**request)
        except anthropic.APIStatusError as e:
            print(json.dumps({"raised": type(e).__name__, "status": e.status_code}))
        else:
            print(json.dumps({"raised": None}))
    elif mode == "two-models":
        # A session as Claude Code runs one: Sonnet and Haiku in turn, 22
        # of each. No SDK retry may hide a 429: any would raise.
        strict = client.with_options(max_retries=0)
        answered = {"claude-sonnet-4-5": 0, "claude-haiku-4-5": 0}
        try:
            for _ in range(22):
                for model in answered:
                    strict.messages.create(**{**request, "model": model})
                    answered[model] += 1
        except anthropic.APIStatusError as e:
            print(json.dumps({"raised": type(e).__name__, "status": e.status_code, "answered": answered}))
        else:
            print(json.dumps({"raised": None, "answered": answered}))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1])

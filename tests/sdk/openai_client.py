"""The official OpenAI Python SDK, pointed at levee's `/v1/` by OPENAI_BASE_URL.

Usage: openai_client.py plain|stream|giveup
Prints one JSON line describing what the SDK returned or raised.
"""

import json
import sys

import openai


def main(mode: str) -> None:
    # The SDK's defaults (2 retries): levee's verdict must stop them.
    client = openai.OpenAI()
    request = dict(
        model="claude-sonnet-4-5",
        max_completion_tokens=64,
        messages=[{"role": "user", "content": "Say hello."}],
    )
    if mode == "plain":
        reply = client.chat.completions.create(**request)
        print(json.dumps({"text": reply.choices[0].message.content, "completion_tokens": reply.usage.completion_tokens}))
    elif mode == "stream":
        stream = client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True})
        text, usage = "", None
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage.completion_tokens
        print(json.dumps({"text": text, "completion_tokens": usage}))
    elif mode in ("giveup", "cut"):
        try:
            if mode == "giveup":
                client.chat.completions.create(**request)
            else:
                for _ in client.chat.completions.create(**request, stream=True):
                    pass
        except openai.APIStatusError as e:
            print(json.dumps({"raised": type(e).__name__, "status": e.status_code}))
        except openai.APIError as e:
            print(json.dumps({"raised": type(e).__name__, "message": e.message}))
        else:
            print(json.dumps({"raised": None}))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1])

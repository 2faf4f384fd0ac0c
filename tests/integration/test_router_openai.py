"""The router's OpenAI-compatible API through the official `openai` package (one CPU shard, tiny
golden checkpoint): chat and completions, streamed and not, equal to /generate's greedy output for
the same prompt (chat: the chat-template prompt), usage counts, stop sequences (left out of the
text, finish_reason "stop"), n=2 with seeds, logprobs, /v1/models, /tokenize, and OpenAI-style
errors with their status codes."""

import json

from router_harness import Checks, Router, requests, skip

try:
    import openai
except ImportError as e:
    skip(f"openai package missing ({e}); install tests/requirements.txt")

USER = "What is the capital of France?"
# The golden model's vocabulary has <|prompter|> / <|assistant|>: OpenAssistant's format.
CHAT_PROMPT = f"<|prompter|>{USER}<|endoftext|><|assistant|>"
PROMPT = "Hello world, this is a test"


def main():
    checks = Checks()
    with Router() as r:
        client = openai.OpenAI(base_url=r.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        model = requests.get(r.url + "/info", timeout=10).json()["model_id"]

        def generate(prompt, n, **params):
            resp = r.post("/generate", {"inputs": prompt, "parameters": {"max_new_tokens": n, "details": True, **params}})
            assert resp.status_code == 200, resp.text
            return resp.json()

        def tokens(text):
            return len(r.post("/tokenize", {"inputs": text}).json())

        def chat():
            want = generate(CHAT_PROMPT, 12)
            resp = client.chat.completions.create(model="anything", messages=[{"role": "user", "content": USER}],
                                                  max_tokens=12, temperature=0)
            assert resp.object == "chat.completion" and resp.model == model
            c = resp.choices[0]
            assert c.message.role == "assistant"
            assert c.message.content == want["generated_text"], (c.message.content, want["generated_text"])
            assert c.finish_reason == {"length": "length"}.get(want["details"]["finish_reason"], "stop")
            assert resp.usage.prompt_tokens == tokens(CHAT_PROMPT)
            assert resp.usage.completion_tokens == want["details"]["generated_tokens"]
            assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens

        def chat_stream():
            want = generate(CHAT_PROMPT, 12)
            chunks = list(client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": USER}], max_tokens=12, temperature=0,
                stream=True, stream_options={"include_usage": True}))
            assert all(ch.object == "chat.completion.chunk" for ch in chunks)
            assert chunks[0].choices[0].delta.role == "assistant"
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            assert text == want["generated_text"], (text, want["generated_text"])
            finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
            assert len(finals) == 1
            usage = chunks[-1]
            assert usage.choices == [] and usage.usage.completion_tokens == want["details"]["generated_tokens"]
            assert usage.usage.prompt_tokens == tokens(CHAT_PROMPT)
            # The wire format: `data: {...}` events, then `data: [DONE]`.
            raw = requests.post(r.url + "/v1/chat/completions", json={
                "messages": [{"role": "user", "content": USER}], "max_tokens": 3, "temperature": 0, "stream": True},
                timeout=60).text
            assert raw.startswith("data: {") and raw.endswith("data: [DONE]\n\n"), raw[-200:]

        def completions():
            want = generate(PROMPT, 12)
            resp = client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0)
            assert resp.object == "text_completion"
            assert resp.choices[0].text == want["generated_text"]
            assert resp.usage.prompt_tokens == tokens(PROMPT)
            assert resp.usage.completion_tokens == 12
            chunks = list(client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0,
                                                    stream=True))
            assert "".join(ch.choices[0].text for ch in chunks) == want["generated_text"]
            assert chunks[-1].choices[0].finish_reason == "length"

        def stop_sequences():
            full = generate(PROMPT, 12)
            toks = full["details"]["tokens"]
            # A token whose text first shows up in the output where that token starts.
            k = next(k for k in range(1, len(toks)) if toks[k]["text"].strip() and
                     "".join(t["text"] for t in toks[:k + 1]).find(toks[k]["text"]) ==
                     len("".join(t["text"] for t in toks[:k])))
            stop = toks[k]["text"]
            before = "".join(t["text"] for t in toks[:k])
            resp = client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0, stop=stop)
            assert resp.choices[0].text == before, (resp.choices[0].text, before)
            assert resp.choices[0].finish_reason == "stop"
            chunks = list(client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0,
                                                    stop=[stop, "zzzz"], stream=True))
            assert "".join(ch.choices[0].text for ch in chunks) == before
            assert chunks[-1].choices[0].finish_reason == "stop"

        def n_with_seeds():
            kw = dict(model=model, prompt=PROMPT, max_tokens=8, temperature=0.9, seed=11, n=2)
            a = client.completions.create(**kw)
            b = client.completions.create(**kw)
            assert [c.index for c in a.choices] == [0, 1]
            assert [c.text for c in a.choices] == [c.text for c in b.choices]
            # Choice i samples with seed + i, as /generate does with that seed.
            for i in range(2):
                want = generate(PROMPT, 8, do_sample=True, temperature=0.9, seed=11 + i)
                assert a.choices[i].text == want["generated_text"], (i, a.choices[i].text, want["generated_text"])
            assert a.usage.completion_tokens == 16
            chunks = list(client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": USER}], max_tokens=6, temperature=0.9, seed=5,
                n=2, stream=True))
            for i in range(2):
                text = "".join(ch.choices[0].delta.content or "" for ch in chunks
                               if ch.choices and ch.choices[0].index == i)
                assert text == generate(CHAT_PROMPT, 6, do_sample=True, temperature=0.9, seed=5 + i)["generated_text"]

        def logprobs():
            want = generate(CHAT_PROMPT, 5)
            resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": USER}],
                                                  max_tokens=5, temperature=0, logprobs=True)
            got = resp.choices[0].logprobs.content
            assert [round(t.logprob, 4) for t in got] == [round(t["logprob"], 4) for t in want["details"]["tokens"]]
            assert [t.token for t in got] == [t["text"] for t in want["details"]["tokens"]]

        def models_and_tokenize():
            models = client.models.list()
            assert [m.id for m in models.data] == [model]
            toks = r.post("/tokenize", {"inputs": PROMPT}).json()
            assert [t["start"] for t in toks][0] == 0 and toks[-1]["stop"] == len(PROMPT.encode())
            assert "".join(t["text"] for t in toks) == PROMPT
            assert all(set(t) == {"id", "text", "start", "stop"} for t in toks)

        def errors():
            cases = [
                (dict(messages=[{"role": "user", "content": USER}], temperature="hot"), 400, "temperature"),
                (dict(messages=[{"role": "user", "content": USER}], presence_penalty=0.5), 400, "presence_penalty"),
                (dict(messages=[{"role": "user", "content": USER}], top_logprobs=2, logprobs=True), 400, "top_logprobs"),
                (dict(messages=[{"role": "user", "content": USER}], n=3), 400, "n"),
                (dict(messages="hello"), 400, "messages"),
                (dict(messages=[{"role": "user", "content": USER}], max_tokens=600), 400, None),
            ]
            for body, status, param in cases:
                try:
                    client.chat.completions.create(model=model, **body)
                    raise AssertionError(f"expected an error for {body}")
                except openai.APIStatusError as e:
                    assert e.status_code == status, (body, e.status_code, e.response.text)
                    err = e.response.json()["error"]
                    assert set(err) == {"message", "type", "param", "code"}, err
                    assert err["type"] == "invalid_request_error" and err["param"] == param, err
            try:
                client.completions.create(model=model, prompt=PROMPT, echo=True, max_tokens=2)
                raise AssertionError("echo accepted")
            except openai.BadRequestError as e:
                assert e.response.json()["error"]["param"] == "echo"
            resp = requests.post(r.url + "/v1/chat/completions", data=b"{nope", timeout=10)
            assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
            resp = requests.get(r.url + "/v1/nothing", timeout=10)
            assert resp.status_code == 404 and "error" in resp.json()
            resp = requests.post(r.url + "/v1/completions", timeout=10, headers={"content-type": "application/json"},
                                 data=b'{"prompt": "caf\xc3", "max_tokens": 2}')
            assert resp.status_code == 400 and resp.json()["error"]["param"] == "prompt"
            resp = requests.post(r.url + "/v1/completions", timeout=10, headers={"content-length": "999999999"}, data=b"")
            assert resp.status_code == 413 and "error" in resp.json(), resp.text
            # Unknown fields are ignored.
            resp = requests.post(r.url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 2, "temperature": 0,
                                                                  "user": "x", "whatever": {"a": 1}}, timeout=60)
            assert resp.status_code == 200, resp.text

        def tgi_routes_unchanged():
            body = r.post("/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 4}}).json()
            assert set(body) == {"generated_text"}
            raw = requests.post(r.url + "/generate_stream", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 2}},
                                timeout=60).text
            assert raw.startswith("data:{") and "[DONE]" not in raw
            assert json.loads(raw.split("\n\n")[0][5:])["token"]

        for fn in (chat, chat_stream, completions, stop_sequences, n_with_seeds, logprobs, models_and_tokenize,
                   errors, tgi_routes_unchanged):
            checks.run(fn.__name__, fn)
    checks.finish()


if __name__ == "__main__":
    main()

"""Use A3 Studio from Python: the snippet of docs/api.md ("Use it from Python"), run by tests/test_api.py.

Start the app first (`python app.py`), or point Client at a Space ("USER/a3-studio").
"""
from gradio_client import Client

client = Client("http://127.0.0.1:7860/")

# one call, one JSON answer: the filled text, each blank's tokens and probabilities, the order, log p
result = client.predict(text="The cat [[4]] on the mat.", api_name="/fill")
print(result["text"])
for blank in result["blanks"]:
    print(repr(blank["fill"]), [round(p, 2) for p in blank["probs"]])
print(result["order"]["label"], result["log_likelihood"], result["factorization"])

# any order, group size, sampling or seed; candidates > 1 ranks fills from other orders, and
# [[?]] lets the model choose the blank's length (every candidate at several lengths), best first
result = client.predict(text="She [[?]] by the fire.", order="confidence", group_size=2,
                        candidates=4, api_name="/fill")
for c in result["candidates"][:3]:
    print(c["rank"], repr(c["fill"]), c["made_by"], c["score"])

# the page's own Fill button: /run takes the same names and streams the animation; predict
# returns its last frame, the page's outputs in order (index 5: the filled story as plain text)
outputs = client.predict(text="The cat [[4]] on the mat.", order="outside_in", speed=0, api_name="/run")
print(outputs[5])

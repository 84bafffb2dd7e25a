"""LLM Objectives Workbench — the dashboard.

Start it with ``make run`` or ``python -m workbench dashboard`` (127.0.0.1 unless ``--host``
says otherwise; beyond loopback they print a link with an access token). Without a token only
this machine gets in, however Streamlit was started; with one, every visitor needs it
(``guard.access_gate``).

The pages only call the ``workbench`` package: Train starts a run as a subprocess through
``workbench.launcher``, the other pages read the run store that the subprocess writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # `import common` from the pages, under `streamlit run` and AppTest alike
    sys.path.insert(0, str(_HERE))

import streamlit as st  # noqa: E402

import common  # noqa: E402
import guard  # noqa: E402

def _favicon():
    """A tiny causal attention pattern (lower triangle), drawn here: no icon fetched from a CDN."""
    import numpy as np
    from PIL import Image

    n = 16
    i, j = np.indices((n, n))
    weight = np.where(j <= i, 1.0 / (i + 1), 0.0) ** 0.35  # row-normalised causal attention
    rgb = np.stack([255 - 225 * weight, 255 - 150 * weight, 255 - 60 * weight], axis=-1)
    return Image.fromarray(np.kron(rgb, np.ones((4, 4, 1))).astype(np.uint8))  # 64 x 64 pixels


st.set_page_config(
    page_title="LLM Objectives Workbench",
    page_icon=_favicon(),
    layout="wide",
    initial_sidebar_state="expanded",
)

guard.access_gate()  # first: a visitor from another machine without the token sees nothing else

common.PAGES = {
    "train": st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", default=True),
    "monitor": st.Page("app_pages/monitor.py", title="Monitor", icon=":material/monitoring:"),
    "attention": st.Page("app_pages/attention.py", title="Attention", icon=":material/grid_on:"),
    "sample": st.Page("app_pages/sample.py", title="Sample / Translate", icon=":material/edit_note:"),
    "tokenizers": st.Page("app_pages/tokenizers.py", title="Tokenizers", icon=":material/text_fields:"),
    "runs": st.Page("app_pages/runs.py", title="Runs", icon=":material/table_rows:"),
}

page = st.navigation(list(common.PAGES.values()), position="sidebar")

with st.sidebar:
    st.markdown("### :material/neurology: LLM Objectives Workbench")
    st.caption("Train small language models, watch them learn, look inside.")

common.run_picker()
guard.exposure_warning()
page.run()

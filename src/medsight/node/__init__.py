"""A DICOM node: receive series by C-STORE, queue a job per routed series, run the model, send
the results by C-STORE (``medsight listen`` / ``medsight work``)."""

from medsight.utils.extras import require

require("pynetdicom", "dicomweb_client", extra="pacs", feature="medsight listen / work")

from medsight.node.config import NodeConfig, load_node_config  # noqa: E402

__all__ = ["NodeConfig", "load_node_config"]

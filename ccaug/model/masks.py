"""Spatial maps of a layout at a UNet layer's resolution: instance masks, soft ellipse maps, background.

Everything here is computed **directly at the resolution of the layer that needs it**, on the device of
the polygons, batched over samples and instance slots, with no rasteriser and no Python loop over
instances. The reference rasterises each polygon with OpenCV on a 512² canvas and bilinearly resizes the
result (64², then 8² or 16², without antialias), in every fused layer at every step, so small objects can
vanish at 8×8 (its weak point §8.11). Here a map at (H, W) is a closed-form function of the polygon
evaluated at the H×W cell centres, cached once per layout and resolution by :class:`LayoutMasks`.

Shapes (B = batch, N = instance slots, H×W = the layer's token grid, HW = H·W):

    polygons   (B, N, 8)      x1 y1 x2 y2 x3 y3 x4 y4, normalised to [0, 1] (x to the right, y down)
    valid      (B, N) bool    True for a real instance, False for a padded slot
    masks      (B, N, H, W)   float 0/1 instance masks; all zero in padded slots
    soft maps  (B, N, H, W)   float in (0, 1); all zero in padded slots and zero-size boxes
    background (B, H, W)      float 0/1, 1 − union of the valid instance masks

Cell (row, col) has its centre at u = (col + 0.5) / W, v = (row + 0.5) / H in the polygons' coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch


def _cell_centres(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised cell-centre coordinates ``u (1, 1, H, W)`` (columns) and ``v (1, 1, H, W)`` (rows)."""
    cols = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    rows = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    return u[None, None], v[None, None]


def _check_layout(polygons: torch.Tensor, valid: torch.Tensor) -> None:
    if polygons.ndim != 3 or polygons.shape[-1] != 8:
        raise ValueError(f"polygons must be (B, N, 8) = x1 y1 … x4 y4, got {tuple(polygons.shape)}")
    if valid.shape != polygons.shape[:2] or valid.dtype != torch.bool:
        raise ValueError(
            f"valid must be a bool tensor of shape {tuple(polygons.shape[:2])} (B, N), "
            f"got {valid.dtype} {tuple(valid.shape)}"
        )


def polygon_masks(
    polygons: torch.Tensor,
    valid: torch.Tensor,
    height: int,
    width: int,
    min_cells: int = 1,
) -> torch.Tensor:
    """Binary masks of convex quadrilaterals on an H×W grid of cells.

    A cell belongs to an instance when its **centre** lies inside or on the polygon (four half-plane tests,
    one per edge, taken relative to the sign of the polygon's area, so clockwise and counter-clockwise
    corner orders give the same mask).

    Minimum-coverage rule: an instance of a valid slot whose mask has fewer than `min_cells` cells at this
    resolution (a small vehicle at 8×8, or a degenerate zero-area polygon) additionally gets the
    `min_cells` cells whose centres are nearest to its centre (the mean of its corners), distances measured
    in cells. With ``min_cells=1`` that is the cell that contains the centre. So no real object ever has an
    empty mask, while objects already covering `min_cells` cells keep their exact centre-sampled mask.
    ``min_cells=0`` turns the rule off.

    Args:
        polygons: ``(B, N, 8)`` normalised corners x1 y1 … x4 y4 of convex quadrilaterals.
        valid: ``(B, N)`` bool; padded slots (False) get an all-zero mask whatever their polygon holds.
        height, width: the grid, H rows by W columns.
        min_cells: the minimum number of cells of a valid instance (0 = no minimum).

    Returns:
        ``(B, N, H, W)`` float32 masks with values 0 or 1.
    """
    _check_layout(polygons, valid)
    if not 0 <= min_cells <= height * width:
        raise ValueError(
            f"min_cells must be in [0, {height * width}] for a {height}×{width} grid, not {min_cells}"
        )
    batch, slots = valid.shape
    poly = torch.where(valid[..., None], polygons.float(), 0.0)
    x = poly[..., 0::2, None, None]  # (B, N, 4, 1, 1)
    y = poly[..., 1::2, None, None]
    x_next = x.roll(-1, dims=2)
    y_next = y.roll(-1, dims=2)
    u, v = _cell_centres(height, width, polygons.device)  # (1, 1, H, W)
    # Cross product of each edge with the vector from its start to the cell centre: (B, N, 4, H, W).
    cross = (x_next - x) * (v[:, :, None] - y) - (y_next - y) * (u[:, :, None] - x)
    # Shoelace: twice the signed area; its sign tells which side of every edge is the inside.
    doubled_area = (x * y_next - x_next * y).sum(dim=2)  # (B, N, 1, 1)
    orientation = torch.sign(doubled_area)
    inside = (cross * orientation[:, :, None] >= 0).all(dim=2) & (orientation != 0)
    inside = inside & valid[..., None, None]

    if min_cells > 0:
        too_small = valid & (inside.flatten(2).sum(-1) < min_cells)  # (B, N)
        centre_x = x.mean(dim=2)  # (B, N, 1, 1)
        centre_y = y.mean(dim=2)
        # Distances in cell units, so the nearest cells are the same whatever the grid's aspect ratio.
        distance = ((u - centre_x) * width) ** 2 + ((v - centre_y) * height) ** 2  # (B, N, H, W)
        nearest = distance.flatten(2).topk(min_cells, dim=-1, largest=False).indices  # (B, N, k)
        forced = torch.zeros(batch, slots, height * width, dtype=torch.bool, device=polygons.device)
        forced.scatter_(-1, nearest, True)
        forced = forced.view(batch, slots, height, width) & too_small[..., None, None]
        inside = inside | forced
    return inside.float()


def soft_ellipse_maps(
    polygons: torch.Tensor,
    valid: torch.Tensor,
    height: int,
    width: int,
    sharpness: float = 10.0,
    min_radius_cells: float = 1.0,
) -> torch.Tensor:
    """The "mask refine" weights S_i of the CC-Diff foreground renderer, at the cell centres.

    With (cx, cy, w, h) the polygon's axis-aligned box (HBB) in normalised coordinates and (u, v) a cell
    centre::

        S(u, v) = sigmoid(sharpness · (1 − ((u − cx) / (w/2))² − ((v − cy) / (h/2))²))

    ≈ 1 inside the ellipse inscribed in the HBB, 0.5 on it, → 0 outside.

    Deviations from the reference (§2.2, §8.11), all deliberate:

    * sampled at **cell centres** u = (col + 0.5) / W, v = (row + 0.5) / H, instead of pixel corners
      col/64, row/64 of a 64² grid that is then bilinearly resized;
    * columns are normalised by W and rows by H (the reference divides columns by H and rows by W, which
      only differs on non-square grids);
    * computed directly at each layer's resolution;
    * half-axes shorter than `min_radius_cells` cells are lengthened to that (in the reference, an object
      smaller than a cell can fall between cell centres and get S ≈ 0 everywhere, i.e. no rendering at
      all). With the default of one cell the cell nearest to the centre gets S ≥ sigmoid(sharpness / 2)
      (0.993 for sharpness 10). ``min_radius_cells=0`` gives the reference formula exactly.

    Args:
        polygons: ``(B, N, 8)`` normalised corners x1 y1 … x4 y4.
        valid: ``(B, N)`` bool; padded slots get an all-zero map.
        height, width: the grid, H rows by W columns.
        sharpness: the sigmoid's slope (10 in the reference).
        min_radius_cells: the shortest half-axis of the ellipse, in cells (0 = no minimum).

    Returns:
        ``(B, N, H, W)`` float32 maps; zero for padded slots and for boxes of zero width or height.
    """
    _check_layout(polygons, valid)
    poly = torch.where(valid[..., None], polygons.float(), 0.0)
    xs, ys = poly[..., 0::2], poly[..., 1::2]
    x_min, x_max = xs.amin(-1), xs.amax(-1)
    y_min, y_max = ys.amin(-1), ys.amax(-1)
    has_area = valid & (x_max > x_min) & (y_max > y_min)  # (B, N)
    half_w = ((x_max - x_min) / 2).clamp_min(min_radius_cells / width)
    half_h = ((y_max - y_min) / 2).clamp_min(min_radius_cells / height)
    # Zero-size boxes are zeroed below; a unit radius keeps their arithmetic finite in the meantime.
    half_w = torch.where(has_area, half_w, 1.0)[..., None, None]
    half_h = torch.where(has_area, half_h, 1.0)[..., None, None]
    cx = ((x_min + x_max) / 2)[..., None, None]
    cy = ((y_min + y_max) / 2)[..., None, None]
    u, v = _cell_centres(height, width, polygons.device)
    squared = ((u - cx) / half_w) ** 2 + ((v - cy) / half_h) ** 2  # (B, N, H, W)
    maps = torch.sigmoid(sharpness * (1.0 - squared))
    return maps * has_area[..., None, None]


def background_mask(instance_masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """1 − the union of the valid instance masks.

    Args:
        instance_masks: ``(B, N, H, W)`` masks in [0, 1].
        valid: ``(B, N)`` bool; padded slots are ignored whatever their mask holds.

    Returns:
        ``(B, H, W)``, 1 where no valid instance covers the cell (for 0/1 masks, a 0/1 mask).
    """
    if instance_masks.ndim != 4 or valid.shape != instance_masks.shape[:2]:
        raise ValueError(
            f"instance_masks must be (B, N, H, W) and valid (B, N); got {tuple(instance_masks.shape)} "
            f"and {tuple(valid.shape)}"
        )
    if instance_masks.shape[1] == 0:  # a batch without instance slots is all background
        return torch.ones(instance_masks.shape[:1] + instance_masks.shape[2:], dtype=instance_masks.dtype, device=instance_masks.device)
    union = (instance_masks * valid[..., None, None]).amax(dim=1)
    return 1.0 - union


def layout_attention_mask(instance_masks: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Which token pairs the layout attention lets attend to each other.

    allowed(p, q) ⇔ Σ_k m_k(p) · m_k(q) > 0 over the instance masks and the background mask: a token
    sees the tokens that share an instance (or the background) with it. Every token shares at least
    itself (it is in some instance or in the background), so no row is fully masked.

    Args:
        instance_masks: ``(B, N, HW)`` 0/1 masks, zero in padded slots.
        background: ``(B, HW)`` 0/1 background mask.

    Returns:
        ``(B, HW, HW)`` bool, True where query p may attend to key q.
    """
    regions = torch.cat([instance_masks, background[:, None]], dim=1)  # (B, N + 1, HW)
    return torch.einsum("bkp,bkq->bpq", regions, regions) > 0


def token_grid(num_tokens: int, latent_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (H, W) grid of a UNet layer with `num_tokens` = H·W spatial tokens.

    With `latent_size` (h, w) of the UNet's input, the grid is the one reached by halving (rounding up,
    as stride-2 convolutions with padding 1 do) until it holds `num_tokens` tokens. Without it the grid
    must be square.
    """
    if latent_size is None:
        side = math.isqrt(num_tokens)
        if side * side != num_tokens:
            raise ValueError(
                f"a layer with {num_tokens} tokens is not a square grid; give LayoutConditions the "
                f"latent_size (h, w) of the UNet input so that its grid can be found"
            )
        return side, side
    height, width = latent_size
    while height * width > num_tokens and (height, width) != (1, 1):
        height, width = -(-height // 2), -(-width // 2)
    if height * width != num_tokens:
        raise ValueError(f"no downsampling of the latent size {latent_size} has {num_tokens} tokens")
    return height, width


@dataclass(frozen=True)
class GridMasks:
    """A layout's maps at one resolution, flattened over the grid (HW = H·W tokens).

    Attributes:
        height, width: the grid.
        instance: ``(B, N, HW)`` 0/1 instance masks (zero in padded slots).
        soft: ``(B, N, HW)`` soft ellipse maps S_i (zero in padded slots).
        background: ``(B, HW)`` 0/1 background mask.
        attention: ``(B, HW, HW)`` bool layout-attention mask (see :func:`layout_attention_mask`).
    """

    height: int
    width: int
    instance: torch.Tensor
    soft: torch.Tensor
    background: torch.Tensor
    attention: torch.Tensor

    @cached_property
    def instance_cells(self) -> InstanceCells:
        """The cells each instance's attention is computed at (:class:`InstanceCells` of `soft`), found once
        per grid: every fused layer at this resolution shares them, and when sampling every step does too."""
        return InstanceCells.where(self.soft)


# The soft maps S_i are sigmoids, so they are never exactly zero; terms weighted below this are skipped. It is
# far below float32 resolution next to the kept terms (S_i < 1e-10 beyond ~1.9 half-axes of the ellipse).
MIN_INSTANCE_WEIGHT = 1e-10


@dataclass(frozen=True)
class InstanceCells:
    """The (instance, cell) pairs whose weight is above `MIN_INSTANCE_WEIGHT`, laid out for one padded
    attention call (see :func:`ccaug.model.fusion.weighted_instance_attention`).

    They depend on the weights alone. Finding them makes the host wait for the device three times (the
    number of kept cells, the number of instances, the longest instance), so :attr:`GridMasks.instance_cells`
    finds them once per grid instead of once per attention call.

    Attributes:
        rows, slot, cell: ``(Q,)`` sample, slot and cell of each kept pair, ordered by (row, slot, cell).
        pairs: ``(G,)`` flat index ``row · N + slot`` of each instance with at least one kept cell.
        group, position: ``(Q,)`` each pair's instance (index into `pairs`) and place within it.
        longest: the most cells any instance keeps (the padded length).
    """

    rows: torch.Tensor
    slot: torch.Tensor
    cell: torch.Tensor
    pairs: torch.Tensor
    group: torch.Tensor
    position: torch.Tensor
    longest: int

    @classmethod
    def where(cls, weights: torch.Tensor) -> InstanceCells:
        """The kept pairs of ``weights (B, N, HW)``."""
        slots = weights.shape[1]
        rows, slot, cell = (weights > MIN_INSTANCE_WEIGHT).nonzero(as_tuple=True)
        pair = rows * slots + slot  # non-decreasing: each instance's cells are contiguous
        pairs, counts = torch.unique_consecutive(pair, return_counts=True)
        group = torch.repeat_interleave(
            torch.arange(len(pairs), device=weights.device), counts, output_size=len(pair)
        )  # output_size: without it the host waits for counts.sum()
        position = torch.arange(len(pair), device=weights.device) - (torch.cumsum(counts, 0) - counts)[group]
        longest = int(counts.max()) if len(counts) else 0
        return cls(rows, slot, cell, pairs, group, position, longest)


class LayoutMasks:
    """Per-resolution cache of a layout's maps.

    Built once per layout (B samples × N slots); :meth:`at` computes the maps of a resolution the first
    time a layer asks for it and returns the cached ones afterwards, so all fused layers at one resolution
    share them, and so do all denoising steps (the layout does not change between steps). Maps are
    computed in float32 on the polygons' device and cast to the requested dtype (cached per dtype).

    Args:
        polygons: ``(B, N, 8)`` normalised corners x1 y1 … x4 y4.
        valid: ``(B, N)`` bool.
        latent_size: ``(h, w)`` of the UNet input, to find non-square grids (see :func:`token_grid`).
        min_cells: minimum-coverage rule of :func:`polygon_masks`.
        sharpness, min_radius_cells: of :func:`soft_ellipse_maps`.
    """

    def __init__(
        self,
        polygons: torch.Tensor,
        valid: torch.Tensor,
        latent_size: tuple[int, int] | None = None,
        min_cells: int = 1,
        sharpness: float = 10.0,
        min_radius_cells: float = 1.0,
    ) -> None:
        _check_layout(polygons, valid)
        self.polygons = polygons
        self.valid = valid
        self.latent_size = latent_size
        self.min_cells = min_cells
        self.sharpness = sharpness
        self.min_radius_cells = min_radius_cells
        self._cache: dict[tuple[int, int, torch.dtype], GridMasks] = {}

    def for_tokens(self, num_tokens: int, dtype: torch.dtype = torch.float32) -> GridMasks:
        """The maps of the layer whose hidden states hold `num_tokens` spatial tokens."""
        height, width = token_grid(num_tokens, self.latent_size)
        return self.at(height, width, dtype)

    def at(self, height: int, width: int, dtype: torch.dtype = torch.float32) -> GridMasks:
        """The maps on an H×W grid (flattened to HW tokens, row-major like the UNet's tokens)."""
        key = (height, width, dtype)
        if key not in self._cache:
            float_key = (height, width, torch.float32)
            if float_key not in self._cache:
                self._cache[float_key] = self._compute(height, width)
            grid = self._cache[float_key]
            if dtype != torch.float32:
                grid = GridMasks(
                    height,
                    width,
                    grid.instance.to(dtype),
                    grid.soft.to(dtype),
                    grid.background.to(dtype),
                    grid.attention,
                )
            self._cache[key] = grid
        return self._cache[key]

    def _compute(self, height: int, width: int) -> GridMasks:
        with torch.no_grad():
            polygons = self.polygons.detach()
            instance = polygon_masks(polygons, self.valid, height, width, self.min_cells)
            soft = soft_ellipse_maps(
                polygons, self.valid, height, width, self.sharpness, self.min_radius_cells
            )
            background = background_mask(instance, self.valid)
            instance = instance.flatten(2)
            background = background.flatten(1)
            attention = layout_attention_mask(instance, background)
        return GridMasks(height, width, instance, soft.flatten(2), background, attention)

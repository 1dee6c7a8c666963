"""Pictures: HOG glyph rendering and the per-image MaskFeat panel grid."""
from .hog_glyphs import (
    bin_gradient_angles,
    glyph_stamps,
    patches_to_cells,
    render_glyphs,
)

__all__ = ["bin_gradient_angles", "glyph_stamps", "patches_to_cells", "render_glyphs"]

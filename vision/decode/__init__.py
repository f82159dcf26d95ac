"""Barcode decoding of a grayscale camera frame.

ZBar (through pyzbar) is the decoding engine.  Raw ZBar only reads 1-D codes that lie near horizontal
or vertical, and on this class of machine a full 1024x768 frame costs it ~160 ms with all
symbologies on (~60 ms for the 1-D ones at half scan density).  So the frame is not handed to ZBar
whole; instead:

1. **Locate** (~4 ms): on a half-size copy, the gradient structure tensor (Scharr products,
   box-filtered) gives per pixel the gradient energy and its *coherence*.  Bars of a 1-D code are
   high-energy and highly coherent (one gradient direction), 2-D codes and text are high-energy
   and incoherent.  Thresholded, closed and split into connected components, these are the
   candidate regions; each 1-D candidate also gets its bar direction from the summed tensor.  The
   energy threshold follows the local contrast (local max-min over the tensor window), so faint
   labels (ink and paper ~50 grey levels apart) are found too; a frame with no strong gradient
   anywhere (an empty belt) stops right after the energy (~6 ms on 5 MP).
2. **1-D pass**: each 1-D candidate is cut out of the full-resolution frame *rotated so its bars are
   vertical* (one ``cv2.warpAffine`` of the crop only) and scanned by ZBar along rows only.  Any
   rotation 0-360 degrees is read.  Polygons are mapped back through the crop's affine transform.
3. **2-D pass**: each square-ish incoherent candidate is cut out (axis-aligned, with margin) and
   scanned for QR codes (ZBar reads QR at any rotation by itself).
4. **Fallback**: if a candidate region that looked like a 1-D code did not decode, the crop is
   retried unfiltered, then enlarged and smoothed, then (thin modules, ~1.5 px) cut again 2x
   upsampled with a wider margin and sharpened, for ZBar and zxing-cpp; if a barcode-like region
   still did not decode,
   the whole frame is scanned once by ZBar at reduced scan
   density (bounded cost; it runs only on frames where something was missed).

Every ZBar call is guarded: an exception from one pass (pyzbar raises ``ValueError`` on some QR
codes) loses only that pass.  Results are validated (EAN-13/UPC-A check digits, ITF length) and
deduplicated by ``(symbology, text)``.

QR text: QR byte segments carry no reliable charset.  ZBar is put into binary mode for QR codes (raw
bytes out); the bytes are decoded as strict UTF-8, else the most plausible of GB18030 / Shift-JIS
(ZBar's Kanji mode output) / Latin-1.  If ZBar cannot do binary mode, its own (possibly wrongly
guessed) conversion is repaired by re-encoding with the charset it guessed (Big5, Shift-JIS, Latin-1)
and decoding again (:func:`recover_qr_text`).

Second engine: zxing-cpp (when installed and enabled) retries each candidate crop that ZBar did not
read, and reads Data Matrix (2-D candidates) and PDF417 (stacked-bar candidates), which the ZBar
build on these machines does not read at all.

The package, each module depending only on those listed before it:

    text      the result type, the symbology names, check digits, QR charsets
    engines   ZBar and zxing-cpp behind one shape of raw read; the symbology and engine names
    locate    the candidate regions (gradient structure tensor)
    crops     crop/rotate geometry; points and polygons back to frame pixels
    confirm   the two-vote confirmation and the dropping of conflicting reads
    attempts  the retry ladder of a 1-D region; the in-place confirmation of whole-frame reads
    frame     decode() over the pyramid and the whole-frame fallback; decode_file(), warm_up(), STATS
"""

from __future__ import annotations

from sorter.vision.decode.confirm import _Collector
from sorter.vision.decode.engines import DEFAULT_ENGINES, DEFAULT_SYMBOLOGIES, ENGINES, _normalise_symbologies, _Raw
from sorter.vision.decode.frame import STATS, decode, decode_file, warm_up
from sorter.vision.decode.locate import _Cand
from sorter.vision.decode.text import (ONE_D, SYMBOLOGIES, Code, ean13_valid, qr_bytes_to_text, recover_qr_text,
                                       upca_valid, validate)

__all__ = [
    "Code",
    "ONE_D",
    "SYMBOLOGIES",
    "decode",
    "decode_file",
    "ean13_valid",
    "qr_bytes_to_text",
    "recover_qr_text",
    "upca_valid",
    "validate",
]

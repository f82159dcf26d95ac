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
   read by zxing-cpp (QR, Micro QR, Data Matrix), then by ZBar if that failed.
4. **Fallback**: if a candidate region that looked like a 1-D code did not decode, the crop is
   retried unfiltered, then enlarged and smoothed, then (thin modules, ~1.5 px) cut again 2x
   upsampled with a wider margin and sharpened, for ZBar and zxing-cpp (and inverted, for
   light-on-dark codes).
5. **Whole frame**: zxing-cpp reads the whole frame with its own search (rotations, downscaling,
   inversion) -- always on a frame up to ~1.4 MP (~6-9 ms), on a larger one only when a barcode-like
   region or a 2-D candidate stayed unread -- so that ``decode`` never reports less than raw
   zxing-cpp. Its 1-D reads are confirmed in place (another decode of their area); without
   zxing-cpp, ZBar scans the whole frame at reduced density instead.

Every engine call is guarded: an exception from one pass (pyzbar raises ``ValueError`` on some QR
codes) loses only that pass.  Results are validated (check digits, the line's Code 39 / ITF rules,
:class:`ReadRules`) and deduplicated by ``(symbology, text)``.  A 1-D read needs two different
attempts to agree (EAN-13/UPC-A: both engines); one that only one attempt made is reported with
``Code.weak`` set, unless another reading of the same place contradicts it.

2-D text: zxing-cpp is read in its ECI text mode, so a symbol that declares its charset (ECI) is
decoded in it; unmarked byte data (and ZBar's binary-mode QR bytes, the fallback) is UTF-8 if
valid, else GB18030 when it reads as common hanzi, else the most plausible of Shift-JIS (Kanji-mode
data), GB18030 and Latin-1 (:func:`qr_bytes_to_text`). If ZBar cannot do binary mode, its own
(possibly wrongly guessed) conversion is repaired (:func:`recover_qr_text`).

zxing-cpp (when installed and enabled) retries each candidate crop that ZBar did not read, reads
the 2-D candidates first, and reads Code 39 (its full-ASCII, Code 32 and PZN forms, which ZBar
reads as other text), UPC-E, Micro QR, Data Matrix and PDF417.

The package, each module depending only on those listed before it:

    text      the result type, the symbology names, check digits and read rules, 2-D charsets
    engines   ZBar and zxing-cpp behind one shape of raw read; the symbology and engine names
    locate    the candidate regions (gradient structure tensor)
    crops     crop/rotate geometry; points and polygons back to frame pixels
    confirm   the two-vote confirmation, weak reads, the dropping of conflicting and partial reads
    attempts  the retry ladder of a 1-D region; the in-place confirmation of whole-frame reads
    frame     decode() over the pyramid and the whole-frame pass; decode_file(), warm_up(), STATS
"""

from __future__ import annotations

from sorter.vision.decode.confirm import _Collector
from sorter.vision.decode.engines import DEFAULT_ENGINES, DEFAULT_SYMBOLOGIES, ENGINES, _normalise_symbologies, _Raw
from sorter.vision.decode.frame import STATS, decode, decode_file, warm_up
from sorter.vision.decode.locate import _Cand
from sorter.vision.decode.text import (ONE_D, SYMBOLOGIES, TWO_D, Code, ReadRules, ean13_valid, eci_bytes_to_text,
                                       qr_bytes_to_text, recover_qr_text, upca_valid, upce_valid, validate)

__all__ = [
    "Code",
    "ReadRules",
    "TWO_D",
    "eci_bytes_to_text",
    "upce_valid",
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

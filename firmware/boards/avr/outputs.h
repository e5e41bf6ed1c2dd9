/* The AVR board's output kinds: one entry of hooks per kind of output (the protocol's
 * OutKind, `configure_actuator.out_kind`), in the flash table avr_out_kinds[] in
 * main.c. The core only calls board_output_ok(), board_output_prepare(),
 * board_output_commit(), board_all_off() and RP_OUTPUT_LEAD_TICKS(); the board looks
 * the kind up here.
 *
 * Adding a kind (as the hobby-servo position and the step/dir positioner were added):
 *   1. a new OutKind value in robo_player/protocol/messages.py (the wire carries 0..15;
 *      a kind without an entry here is refused at configure with BAD_OUTPUT);
 *   2. its hooks: `ok` (which addresses/channels exist), `prepare` (timer context: all
 *      the lookups, fills rp_out_t; a kind whose commit is not a port write sets
 *      `port = 0`), `commit` (interrupts off, at the exact tick: keep it short, or queue
 *      the work as the PCA9685 engine does), and where needed `lead_ticks` (the output
 *      changes that long after its commit: the core queues its commands that much early)
 *      and `all_off` (interrupts off: everything of this kind off at once);
 *   3. an entry in avr_out_kinds[] at the kind's value.
 * firmware/core is not touched. A kind that needs periodic work of its own (a servo's
 * 50 Hz pulse train, a step generator) runs it from its own timer interrupt and reads
 * the level its commit stored. */
#ifndef RP_AVR_OUTPUTS_H
#define RP_AVR_OUTPUTS_H

#include <stdint.h>

/* a prepared output write: a direct pin's port and mask, or a level for the kind's
 * commit hook */
typedef struct {
    volatile uint8_t *port; /* 0: the kind's commit hook writes it */
    uint8_t mask, on, actuator, kind;
    uint16_t level;
} rp_out_t;

typedef struct {
    uint8_t (*ok)(uint8_t addr, uint8_t channel);
    void (*prepare)(uint8_t actuator, uint8_t addr, uint8_t channel, uint16_t level,
                    uint16_t pwm_max, rp_out_t *o);
    void (*commit)(const rp_out_t *o); /* 0: a port write (port, mask, on) */
    uint32_t (*lead_ticks)(void);      /* 0: the output changes at its commit */
    void (*all_off)(void);             /* 0: the core's per-output offs are enough */
} avr_out_kind_t;

/* entries of avr_out_kinds[]: RP_OUT_DIRECT, RP_OUT_PCA9685, RP_OUT_SERVO,
 * RP_OUT_STEP_DIR */
#define AVR_OUT_KINDS 4
void avr_out_commit(const rp_out_t *o); /* calls the kind's commit hook */
uint32_t avr_out_lead(uint8_t kind);    /* the kind's lead_ticks, 0 without one */
/* a direct output's port register and bit mask (main.c) */
volatile uint8_t *avr_output_port(uint8_t output, uint8_t *mask);
/* step/dir positioners (out_step.c) */
uint8_t avr_step_ok(uint8_t addr, uint8_t channel);
void avr_step_prepare(uint8_t actuator, uint8_t addr, uint8_t channel, uint16_t level,
                      uint16_t pwm_max, rp_out_t *o);
void avr_step_commit(const rp_out_t *o);
void avr_step_all_off(void);
/* hobby servos (out_servo.c; prepare and commit: the step kind's, which do nothing) */
uint8_t avr_servo_ok(uint8_t addr, uint8_t channel);
void avr_servo_all_off(void);
uint8_t avr_servo_move(uint16_t actuator, uint8_t out_channel, uint16_t position, uint32_t clock);
uint8_t avr_servo_busy(uint16_t actuator, uint32_t clock);
uint8_t avr_servos(void); /* servo slots taken */
/* carriages with a slot (kept until reset): board_output_busy scans only then */
extern uint8_t avr_carriages;
#define AVR_CARRIAGE_STEP 1U
#define AVR_CARRIAGE_SERVO 2U

#endif

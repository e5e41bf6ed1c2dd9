/* Software PWM on the AVR's direct pins: a level between 0 and full drive (a strike's
 * drive, a hold) is delivered as a duty on a common period, so a direct pin gives the
 * coil the energy the plan asked for, as a PCA9685 channel does.
 *
 * Timer3 (prescaler 8: 2 MHz, CTC at RP_SOFT_PWM_TOP) runs only while some pin is at a
 * partial level. Its period start (COMPA) turns every such pin on with one write per
 * port; COMPB then fires once per distinct duty (a "group": the pins at one level) and
 * turns that group's pins off. A piano's holds share one duty and at most
 * max_concurrent strikes run at once, so a period costs 1 + (groups) short interrupts,
 * whatever the number of pins (61 on piano-61-diy). A level that finds no free group
 * takes the nearest one (counted in avr_pwm_merges).
 *
 * The exact edges stay the core's: a strike's pin goes on at its clock through the
 * core's own port write (board_output_commit); it joins its group at the first
 * period start that sees it high. A change between partial levels (pulse -> hold) or
 * to off moves or drops the pin in prepare, before its clock, and the core's write
 * switches it off at the clock: a pulse ends exactly when planned (a key struck again
 * while held gets that off edge, then its drive from the next period start). Nothing
 * is allocated; every loop is bounded by AVR_PWM_GROUPS, AVR_PWM_PENDING or the 11 ports.
 * RAM: 112 bytes (groups 5 * 15-byte rows: off tick, port bitmap, 11 masks; the order;
 * 11 on masks; 5 pending). */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/pgmspace.h>
#include <stdint.h>

#include "board_config.h"
#include "out_pwm.h"
#include "pins.h"

#define PORTS 11
#define OFF_LEVEL 0x8000U /* a pending off tick still in counts of sc_max */
#if AVR_PWM_GROUPS > 8 || RP_SOFT_PWM_TOP > 0xFF00UL
#error "out_pwm: at most 8 groups, a period within Timer3's 16 bits"
#endif

static const uint8_t pwm_pins[RP_AVR_DIRECT_OUTPUTS] PROGMEM = RP_AVR_PINS_INIT;
/* A group's row (COMPB reads it from one pointer, grp + order[cur]: ROW_OFF): its off
 * tick within the period, the ports that hold members (bit p: mask[p] != 0; 0: the
 * group is empty), so that COMPB skips the other ports with one bit test each (was a
 * load and a test of every port's mask), and its members per port. */
typedef struct {
    uint16_t off;
    uint16_t ports;
    uint8_t mask[PORTS];
} grp_row;
static grp_row grp[AVR_PWM_GROUPS];
typedef char grp_row_is_15_bytes[sizeof(grp_row) == 15 ? 1 : -1]; /* (OFFS_ASM) */
uint8_t avr_pwm_used; /* bit g: group g has members or joins */
static const uint16_t port_bit[PORTS] PROGMEM = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
static uint8_t on_mask[PORTS];                  /* every member, per port */
/* the used groups by off tick, each as its row's offset in grp[] (15 g: the interrupts
 * point Z at the row with no multiply); COMPB's next */
static uint8_t order[AVR_PWM_GROUPS], norder, cur;
#define ROW(off) ((grp_row *)((uint8_t *)grp + (off)))
#define ROW_OFF(g) ((uint8_t)((g) * sizeof(grp_row)))
static uint8_t ordered; /* bit g: group g is in order[] (a used group not in it: new) */
/* strikes prepared but maybe not yet committed: channel and group; they join once their
 * pin is high (the core's commit) */
static uint8_t pend_ch[AVR_PWM_PENDING]; /* channel */
uint8_t avr_pwm_npend;
static uint16_t pend_off[AVR_PWM_PENDING];
static uint8_t grp_stale; /* a group taken, or the last one freed: rebuild at the next period start */
/* the last pwm_max, and TOP * 256 / pwm_max (8-bit levels ready at build) */
static uint16_t sc_max = 255, sc_scale = (uint16_t)((RP_SOFT_PWM_TOP << 8) / 255U);
uint16_t avr_pwm_merges;

static volatile uint8_t *port_of(uint8_t p)
{
    /* PORTA..PORTG at 0x22 + 3p; PORTH..PORTL at 0x102 + 3 (p - 7) */
    return (volatile uint8_t *)(uintptr_t)(p < 7 ? 0x22U + 3U * p : 0x102U + 3U * (p - 7U));
}

/* every port's write, unrolled: constant addresses (a few cycles each) */
#define EACH_PORT(X) X(0, PORTA) X(1, PORTB) X(2, PORTC) X(3, PORTD) X(4, PORTE) X(5, PORTF) \
    X(6, PORTG) X(7, PORTH) X(8, PORTJ) X(9, PORTK) X(10, PORTL)

/* interrupts off: the used groups in off-tick order; starts or stops the timer, and
 * points COMPB at the first group still due in the running period */
static void rebuild(void)
{
    grp_stale = 0;
    /* the order holds every used group that was in it (group_free takes a group out at
     * once): only the groups new since (one per strike that makes its own) are put in,
     * by their off tick (no two used groups share one: group_for), and the emptied
     * ones not in it freed */
    uint8_t left = (uint8_t)(avr_pwm_used & ~ordered), bit = 1;
    for (uint8_t g = 0; left; g++, bit <<= 1, left >>= 1) {
        if (!(left & 1))
            continue;
        const grp_row *r = &grp[g];
        if (!r->ports) {
            avr_pwm_used &= (uint8_t)~bit; /* free */
            continue;
        }
        uint16_t o = r->off;
        uint8_t i = norder++;
        while (i && ROW(order[i - 1])->off > o) {
            order[i] = order[i - 1];
            i--;
        }
        order[i] = ROW_OFF(g);
        ordered |= bit;
    }
    if (!norder && !avr_pwm_npend) { /* nothing at a partial level: the timer stops */
        TCCR3B = 0;
        TIMSK3 = 0;
        return;
    }
    uint16_t now = TCNT3;
    cur = 0;
    while (cur < norder && ROW(order[cur])->off <= now)
        cur++; /* passed in this period: their pins go off in the next */
    if (cur < norder) {
        OCR3B = ROW(order[cur])->off;
        TIFR3 = _BV(OCF3B);
        TIMSK3 |= _BV(OCIE3B);
    } else {
        TIMSK3 &= (uint8_t)~_BV(OCIE3B);
    }
}

static uint8_t group_for(uint16_t off);

/* interrupts off: an emptied group is free at once and leaves the order (COMPB, if it
 * was due next, finds the next group not yet due and moves on); the period start's slow
 * path is not needed for it (a strike's pulse -> hold left one such group per note).
 * The last group gone: the next period start stops the timer. */
static void group_free(uint8_t g)
{
    avr_pwm_used &= (uint8_t)~(1U << g);
    ordered &= (uint8_t)~(1U << g);
    uint8_t i = 0;
    uint8_t og = ROW_OFF(g);
    while (i < norder && order[i] != og)
        i++;
    if (i < norder) { /* (a group not in the order yet: a rebuild is due anyway) */
        norder--;
        if (i < cur)
            cur--;
        for (; i < norder; i++)
            order[i] = order[i + 1];
    }
    if (!avr_pwm_used)
        grp_stale = 1;
}

/* interrupts off: the pin leaves the group it is a member of (if any); 1 if it was. A
 * group it empties is freed (group_free); one with members left needs nothing more
 * (COMPB reads the masks as they are). */
static uint8_t unjoin(uint8_t p, uint8_t m)
{
    if (!(on_mask[p] & m))
        return 0;
    on_mask[p] &= (uint8_t)~m;
    uint8_t *gm = &grp[0].mask[p], used = avr_pwm_used; /* (stepped: no shift, no multiply) */
    for (uint8_t g = 0; g < AVR_PWM_GROUPS; g++, gm += sizeof(grp_row), used >>= 1)
        if ((used & 1) && (*gm & m)) { /* (free: stale masks) */
            if (!(*gm &= (uint8_t)~m) && !(grp[g].ports &= (uint16_t)~pgm_read_word(&port_bit[p])))
                group_free(g); /* its last member */
            break;
        }
    return 1;
}

/* interrupts off: the pin joins group g; 1 if it is the group's first member (a group
 * new to the order) */
static uint8_t join(uint8_t g, uint8_t p, uint8_t m)
{
    unjoin(p, m); /* (a strike prepared twice) */
    grp_row *r = &grp[g];
    uint8_t first = !r->ports;
    r->mask[p] |= m;
    r->ports |= pgm_read_word(&port_bit[p]);
    avr_pwm_used |= (uint8_t)(1U << g); /* (freed by the unjoin above if it was its only member) */
    on_mask[p] |= m;
    return first;
}

/* Timer3's period start, with interrupts let in (the core's timer among them): the
 * pending pins whose strike the core has committed (high) join their groups, one at a
 * time with interrupts off; then, if a group is new, the order is rebuilt. The
 * bookkeeping runs here, not in prepare, so that the core's decisions before an exact
 * edge stay short, and in steps, so that no stretch with interrupts off is long (a
 * chord of 8 joins at once). Returns with interrupts off. */
static void join_pending(void)
{
    uint8_t k = 0, changed = 0;
    for (;;) {
        cli();
        if (k >= avr_pwm_npend)
            break;
        uint8_t ch = pend_ch[k];
        uint8_t pb = pgm_read_byte(&pwm_pins[ch]);
        uint8_t p = pb >> 3, m = (uint8_t)(1U << (pb & 7));
        if (*port_of(p) & m) { /* the strike's pin is high: committed */
            uint8_t g = group_for(pend_off[k]);
            uint8_t first = join(g, p, m);
            avr_pwm_npend--;
            pend_ch[k] = pend_ch[avr_pwm_npend];
            pend_off[k] = pend_off[avr_pwm_npend];
            changed |= first; /* a new group; a member more needs no order */
        } else {
            k++;
        }
        sei();
    }
    if (changed || grp_stale)
        rebuild();
}

/* interrupts off: the groups whose off tick has come switch off; COMPB is set for the
 * next one (a tick already passed, after a late interrupt, is taken at once) */
static inline __attribute__((always_inline)) void offs_due(uint8_t all)
{
    while (cur < norder) {
        const grp_row *r = ROW(order[cur]);
        if (!all && r->off > TCNT3 + 8U)
            break;
        cur++;
        const uint8_t *m = r->mask;
#define OFF(i, reg)                                                                        \
    if (m[i])                                                                              \
        reg &= (uint8_t)~m[i];
        EACH_PORT(OFF)
#undef OFF
    }
    if (cur < norder) {
        OCR3B = ROW(order[cur])->off;
        TIMSK3 |= _BV(OCIE3B);
    } else {
        TIMSK3 &= (uint8_t)~_BV(OCIE3B); /* until the next period start */
    }
}

/* The period start's slow path (called from the hand-written interrupt below, which has
 * saved every call-clobbered register): the last period's groups still due (their COMPB
 * was held back by the core's wait across the period's end) off first, late; every
 * member on; the groups already due; then the bookkeeping (joins, freed groups, the
 * order), after the port writes: a strike's pin stays on until the first period start
 * after its edge, then follows its group. */
static __attribute__((used)) void period_slow(void)
{
    offs_due(1);
#define ON(i, reg)                                                                         \
    if (on_mask[i])                                                                        \
        reg |= on_mask[i];
    EACH_PORT(ON)
#undef ON
    cur = 0;
    offs_due(0); /* (came late, held by the core's wait: the groups already due) */
    if (avr_pwm_npend || grp_stale)
        join_pending(); /* (a new group: rebuild() points COMPB at it) */
}

/* The period start's C path when only the bookkeeping is left (a strike waiting to join,
 * a group to put in the order): the hand-written interrupt has turned every member on
 * and switched off the groups due, as period_slow() would (no group of the last period
 * was left: it takes that case). About one call per strike. */
static __attribute__((used)) void period_join(void) { join_pending(); }

/* The two Timer3 interrupts run about 2200 times a second at 100 notes/s (a period start
 * and one off tick per distinct level, 490 times a second): written by hand, they save 6
 * registers, not the 14 (and RAMPZ) avr-gcc's prologue saved (issue 8: CPU load; the C
 * form of both was 23 % of the busy cycles). offs_due() and period_slow() are the
 * reference; OFFS_ASM is offs_due(0): while the group at order[cur] is due (its off tick
 * <= TCNT3 + 8), its pins go off (only the ports of its `ports` bitmap: one SBRS each
 * for the others) and cur moves on; then OCR3B is the next group's off tick (its flag
 * cleared) or COMPB stops. Z points at the row, r26:r27 hold its port bitmap. */
#define OFF_IO(i, bits, bit, p)                                                            \
    "sbrs " #bits ", " #bit "\n\t" "rjmp 2f\n\t" "ldd r24, Z+4+" #i "\n\t" "com r24\n\t"   \
    "in r25, %[" #p "]\n\t" "and r25, r24\n\t" "out %[" #p "], r25\n\t" "2:\n\t"
#define OFF_MEM(i, bits, bit, p)                                                           \
    "sbrs " #bits ", " #bit "\n\t" "rjmp 2f\n\t" "ldd r24, Z+4+" #i "\n\t" "com r24\n\t"   \
    "lds r25, %[" #p "]\n\t" "and r25, r24\n\t" "sts %[" #p "], r25\n\t" "2:\n\t"
/* the ports in three blocks (A-D, E-H, J-L), each skipped in 3 cycles when the group
 * has no member there (a strike's group: one port; was 3 cycles for each port) */
#define EACH_OFF_ASM                                                                       \
    "mov r24, r26\n\t" "andi r24, 0x0F\n\t" "breq 10f\n\t"                               \
    OFF_IO(0, r26, 0, pa) OFF_IO(1, r26, 1, pb) OFF_IO(2, r26, 2, pc) OFF_IO(3, r26, 3, pd) \
    "10:\n\t" "mov r24, r26\n\t" "andi r24, 0xF0\n\t" "breq 11f\n\t"                    \
    OFF_IO(4, r26, 4, pe) OFF_IO(5, r26, 5, pf) OFF_IO(6, r26, 6, pg) OFF_MEM(7, r26, 7, ph) \
    "11:\n\t" "tst r27\n\t" "breq 12f\n\t"                                               \
    OFF_MEM(8, r27, 0, pj) OFF_MEM(9, r27, 1, pk) OFF_MEM(10, r27, 2, pl) "12:\n\t"
#define ON_IO(i, p)                                                                        \
    "ldd r24, Z+" #i "\n\t" "tst r24\n\t" "breq 2f\n\t"                                    \
    "in r26, %[" #p "]\n\t" "or r26, r24\n\t" "out %[" #p "], r26\n\t" "2:\n\t"
#define ON_MEM(i, p)                                                                       \
    "ldd r24, Z+" #i "\n\t" "tst r24\n\t" "breq 2f\n\t"                                    \
    "lds r26, %[" #p "]\n\t" "or r26, r24\n\t" "sts %[" #p "], r26\n\t" "2:\n\t"
#define EACH_PORT_ASM(IO, MEM) IO(0, pa) IO(1, pb) IO(2, pc) IO(3, pd) IO(4, pe) IO(5, pf) \
    IO(6, pg) MEM(7, ph) MEM(8, pj) MEM(9, pk) MEM(10, pl)
#if AVR_PWM_GROUPS > 17
#error "out_pwm: order[] holds 15 g in a byte"
#endif
#define PUSH_ASM                                                                           \
    "push r24\n\t" "in r24, __SREG__\n\t" "push r24\n\t" "push r25\n\t" "push r26\n\t"     \
    "push r27\n\t" "push r30\n\t" "push r31\n\t"
#define POP_ASM                                                                            \
    "pop r31\n\t" "pop r30\n\t" "pop r27\n\t" "pop r26\n\t" "pop r25\n\t" "pop r24\n\t"    \
    "out __SREG__, r24\n\t" "pop r24\n\t" "reti\n\t"
/* ARM_ASM: OCIE3B on (the period start; compare B itself has it on: nothing) */
#define OFFS_ASM_(ARM_ASM)                                                                 \
    "1:\n\t"                                                                               \
    "lds r30, %[cur]\n\t" "lds r24, %[norder]\n\t" "cp r30, r24\n\t" "brlo 3f\n\t"         \
    "rjmp 8f\n\t" "3:\n\t"                                                                 \
    "ldi r31, 0\n\t" "subi r30, lo8(-(%[order]))\n\t" "sbci r31, hi8(-(%[order]))\n\t"    \
    "ld r30, Z\n\t" "ldi r31, 0\n\t"                /* 15 g = order[cur] */              \
    "subi r30, lo8(-(%[grp]))\n\t" "sbci r31, hi8(-(%[grp]))\n\t"                          \
    "ld r26, Z\n\t" "ldd r27, Z+1\n\t"                /* X = grp[g].off */                 \
    "lds r24, %[tcnt]\n\t" "lds r25, %[tcnt]+1\n\t" "adiw r24, 9\n\t"                      \
    "cp r26, r24\n\t" "cpc r27, r25\n\t" "brlo 4f\n\t"                                     \
    "rjmp 7f\n\t" "4:\n\t" /* off > TCNT3 + 8: not yet */                                  \
    "lds r24, %[cur]\n\t" "inc r24\n\t" "sts %[cur], r24\n\t"                              \
    "ldd r26, Z+2\n\t" "ldd r27, Z+3\n\t"             /* grp[g].ports */                   \
    EACH_OFF_ASM                                                                           \
    "rjmp 1b\n\t"                                                                          \
    "7:\n\t"                                          /* OCR3B: high byte first */         \
    "sts %[ocr]+1, r27\n\t" "sts %[ocr], r26\n\t"                                          \
    "ldi r24, %[ocf]\n\t" "out %[tifr], r24\n\t"                                           \
    ARM_ASM                                                                                \
    "rjmp 9f\n\t"                                                                          \
    "8:\n\t"                                                                               \
    "lds r24, %[timsk]\n\t" "andi r24, %[nocf]\n\t" "sts %[timsk], r24\n\t"                \
    "9:\n\t"
#define OFFS_ASM OFFS_ASM_("lds r24, %[timsk]\n\t" "ori r24, %[ocf]\n\t" "sts %[timsk], r24\n\t")
#define PWM_ASM_OPERANDS                                                                   \
    [cur] "i"(&cur), [norder] "i"(&norder), [order] "i"(order), [grp] "i"(grp),            \
    [on] "i"(on_mask), [npend] "i"(&avr_pwm_npend), [stale] "i"(&grp_stale), \
    [slow] "i"(period_slow), [join] "i"(period_join), [tcnt] "n"(_SFR_MEM_ADDR(TCNT3)),       \
    [ocr] "n"(_SFR_MEM_ADDR(OCR3B)), [timsk] "n"(_SFR_MEM_ADDR(TIMSK3)),                   \
    [tifr] "I"(_SFR_IO_ADDR(TIFR3)), [ocf] "n"(_BV(OCF3B)), [nocf] "n"((uint8_t)~_BV(OCF3B)), \
    [rampz] "I"(_SFR_IO_ADDR(RAMPZ)), [pa] "I"(_SFR_IO_ADDR(PORTA)),                       \
    [pb] "I"(_SFR_IO_ADDR(PORTB)), [pc] "I"(_SFR_IO_ADDR(PORTC)), [pd] "I"(_SFR_IO_ADDR(PORTD)), \
    [pe] "I"(_SFR_IO_ADDR(PORTE)), [pf] "I"(_SFR_IO_ADDR(PORTF)), [pg] "I"(_SFR_IO_ADDR(PORTG)), \
    [ph] "n"(_SFR_MEM_ADDR(PORTH)), [pj] "n"(_SFR_MEM_ADDR(PORTJ)), [pk] "n"(_SFR_MEM_ADDR(PORTK)), \
    [pl] "n"(_SFR_MEM_ADDR(PORTL))
#if OCF3B != OCIE3B
#error "out_pwm: OFFS_ASM sets OCIE3B with OCF3B's bit"
#endif

/* a C function from the hand-written interrupts: the rest of the call-clobbered
 * registers around it */
#define CALL_C_ASM(fn)                                                                     \
    "push r0\n\t" "push r1\n\t" "clr r1\n\t" "in r0, %[rampz]\n\t" "push r0\n\t"           \
    "push r18\n\t" "push r19\n\t" "push r20\n\t" "push r21\n\t" "push r22\n\t"             \
    "push r23\n\t" "call %x[" #fn "]\n\t"                                                   \
    "pop r23\n\t" "pop r22\n\t" "pop r21\n\t" "pop r20\n\t" "pop r19\n\t" "pop r18\n\t"  \
    "pop r0\n\t" "out %[rampz], r0\n\t" "pop r1\n\t" "pop r0\n\t"

/* period start: every member on, then the groups due; then, if a strike waits to join
 * or a group is stale, the bookkeeping in C (period_join); a group of the last period
 * still due (late): all of it in C (period_slow) */
ISR(TIMER3_COMPA_vect, ISR_NAKED)
{
    __asm__ __volatile__(
        PUSH_ASM
        "lds r24, %[cur]\n\t" "lds r25, %[norder]\n\t" "cp r24, r25\n\t" "brsh 3f\n\t"
        "rjmp 5f\n\t" "3:\n\t"
        "ldi r30, lo8(%[on])\n\t" "ldi r31, hi8(%[on])\n\t"
        EACH_PORT_ASM(ON_IO, ON_MEM)
        "clr r24\n\t" "sts %[cur], r24\n\t"
        OFFS_ASM
        "lds r24, %[npend]\n\t" "lds r25, %[stale]\n\t" "or r24, r25\n\t" "breq 6f\n\t"
        CALL_C_ASM(join)
        "rjmp 6f\n\t"
        "5:\n\t"
        CALL_C_ASM(slow)
        "6:\n\t"
        POP_ASM
        :
        : PWM_ASM_OPERANDS);
}

/* a group's off tick (and any due with it). r24 and SREG wait in GPIOR1/GPIOR2 (an OUT
 * and an IN: 4 cycles less than a PUSH and a POP each, 7000 times in driver_load.py's
 * run): only the interrupts that do the same use them (this one and the UART's two,
 * boards/avr/main.c), and none of them lets another in (nothing between a save and its
 * restore can overwrite them). */
#define PUSH_B_ASM                                                                         \
    "out %[gp1], r24\n\t" "in r24, __SREG__\n\t" "out %[gp2], r24\n\t" "push r25\n\t"    \
    "push r26\n\t" "push r27\n\t" "push r30\n\t" "push r31\n\t"
#define POP_B_ASM                                                                          \
    "pop r31\n\t" "pop r30\n\t" "pop r27\n\t" "pop r26\n\t" "pop r25\n\t"               \
    "in r24, %[gp2]\n\t" "out __SREG__, r24\n\t" "in r24, %[gp1]\n\t" "reti\n\t"
ISR(TIMER3_COMPB_vect, ISR_NAKED)
{
    __asm__ __volatile__(PUSH_B_ASM OFFS_ASM_("") POP_B_ASM
                         :
                         : PWM_ASM_OPERANDS, [gp1] "I"(_SFR_IO_ADDR(GPIOR1)),
                           [gp2] "I"(_SFR_IO_ADDR(GPIOR2)));
}

/* interrupts off: the pin leaves its group (cleared at once, so that no period start
 * turns it on again; an emptied group is freed at the next period start) and the pending
 * list. Returns 1 if it was a member or pending. */
static uint8_t drop(uint8_t ch, uint8_t p, uint8_t m)
{
    uint8_t was = 0;
    for (uint8_t k = 0; k < avr_pwm_npend; k++)
        if ((pend_ch[k] & 0x7F) == ch) {
            avr_pwm_npend--;
            pend_ch[k] = pend_ch[avr_pwm_npend];
            pend_off[k] = pend_off[avr_pwm_npend];
            was = 1;
            break;
        }
    if (unjoin(p, m))
        was = 1;
    return was;
}

static uint16_t off_tick(uint16_t off)
{
    if (!(off & OFF_LEVEL))
        return off;
    off = (uint16_t)(((uint32_t)(off & ~OFF_LEVEL) * sc_scale) >> 8);
    return off ? off : 1;
}

static uint8_t group_for(uint16_t off)
{
    off = off_tick(off);
    uint8_t free_g = 0xFF, used = avr_pwm_used;
    const grp_row *r = grp;
    /* a group at this tick (the holds, a chord's strikes of one drive), or the first free
     * one: no distances unless every group is taken (stepped: no shift, no multiply) */
    for (uint8_t g = 0; g < AVR_PWM_GROUPS; g++, r++, used >>= 1) {
        if (!(used & 1)) {
            if (free_g == 0xFF)
                free_g = g;
        } else if (r->off == off) {
            return g;
        }
    }
    if (free_g != 0xFF) {
        grp_row *f = &grp[free_g];
        f->off = off;
        avr_pwm_used |= (uint8_t)(1U << free_g);
        f->ports = 0; /* (all-off leaves them: cleared here) */
        for (uint8_t i = 0; i < PORTS; i++)
            f->mask[i] = 0;
        return free_g;
    }
    uint8_t near = 0;
    uint16_t best = 0xFFFF;
    for (uint8_t g = 0; g < AVR_PWM_GROUPS; g++) { /* every group used */
        uint16_t go = grp[g].off, d = go > off ? go - off : off - go;
        if (d < best)
            best = d, near = g;
    }
    if (avr_pwm_merges != 0xFFFF)
        avr_pwm_merges++;
    return near;
}

/* inside the core's timer context: AVR_PWM_HELD, and TIMSK3's bits saved here (the hold
 * and release are inline: board_config.h) */
#define HELD AVR_PWM_HELD
uint8_t avr_pwm_held;

static void timer_start(void)
{
    if (TCCR3B)
        return;
    TCNT3 = 0; /* the pins join at the first period's end */
    OCR3A = (uint16_t)RP_SOFT_PWM_TOP;
    TIFR3 = _BV(OCF3A) | _BV(OCF3B);
    if (avr_pwm_held & HELD)
        avr_pwm_held = HELD | _BV(OCIE3A);
    else
        TIMSK3 = _BV(OCIE3A);
    TCCR3B = _BV(WGM32) | _BV(CS31); /* CTC (TOP = OCR3A), clk/8 */
}

void avr_pwm_prepare(uint8_t ch, uint8_t p, uint16_t level, uint16_t pwm_max, rp_out_t *o)
{
    /* (off or full on with no pin at a partial level: the caller does not ask) */
    uint8_t partial = level && level < pwm_max, m = o->mask;
    /* the off tick: level * scale / 256, a multiplication; pending strikes keep the
     * level (OFF_LEVEL) and Timer3's interrupt multiplies */
    uint16_t off = 0;
    if (partial) {
        if (pwm_max != sc_max) { /* a division once per resolution (255: at build) */
            sc_max = pwm_max;
            sc_scale = (uint16_t)((RP_SOFT_PWM_TOP << 8) / pwm_max);
        }
        off = level | OFF_LEVEL;
    }
    uint8_t s = SREG;
    cli();
    if (partial && !(on_mask[p] & m) && !(*o->port & m)) {
        /* a strike (the hot path, just before an exact edge: a few cycles): the core's
         * write at its clock turns the pin on; it joins its group at the next period
         * interrupt that sees it high. (A pin already high, at full drive or a strike
         * still waiting to join, is a level change below: its pulse ends at its clock.
         * Taken as a strike, it stayed on up to a PWM period longer: issue 9.) */
        if (avr_pwm_npend < AVR_PWM_PENDING) {
            pend_ch[avr_pwm_npend] = ch;
            pend_off[avr_pwm_npend++] = off;
        } else { /* full: join at once */
            join(group_for(off), p, m);
            grp_stale = 1;
        }
        timer_start();
        SREG = s;
        return;
    }
    /* a member (or a pin high: full drive, a strike waiting to join) changes level
     * (pulse -> hold: it moves to its new group now; a new group joins the order at the
     * next period start) or goes off or full on (the core writes the pin at its clock) */
    drop(ch, p, m);
    if (partial) {
        if (join(group_for(off), p, m))
            grp_stale = 1; /* (a group of its own: not in the order yet) */
        /* a level change (pulse -> hold) switches the pin off at its clock (the core's
         * write: the strike's energy ends there exactly); it comes on again at the next
         * period start at its new duty */
        o->on = 0;
    }
    SREG = s;
}

void avr_pwm_all_off(void)
{
    /* interrupts off and short: the timer stops, no pin is a member any more (a group's
     * masks are cleared when it is next taken) */
    TCCR3B = 0;
    TIMSK3 = 0;
    for (uint8_t i = 0; i < PORTS; i++)
        on_mask[i] = 0;
    for (uint8_t g = 0; g < AVR_PWM_GROUPS; g++)
        grp[g].ports = 0;
    avr_pwm_used = norder = ordered = avr_pwm_npend = grp_stale = 0;
    avr_pwm_held = 0;
}

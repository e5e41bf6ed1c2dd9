/* Direct outputs of the AVR board: output k (the spec's board output number) drives
 * Arduino Mega pin D2..D19 (k = 0..17) or D22..D69 (k = 18..65). D0/D1 are UART0 and
 * D20/D21 the I2C bus of the PCA9685 boards. Each entry is port << 3 | bit, ports
 * A=0 B=1 C=2 D=3 E=4 F=5 G=6 H=7 J=8 K=9 L=10. Shared with the simavr harness. */
#ifndef RP_AVR_PINS_H
#define RP_AVR_PINS_H

#define RP_AVR_PORT(c) ((c) == 'J' ? 8 : (c) == 'K' ? 9 : (c) == 'L' ? 10 : (c) - 'A')
#define P(port, bit) (uint8_t)(RP_AVR_PORT(port) << 3 | (bit))
#define RP_AVR_DIRECT_OUTPUTS 66
#define RP_AVR_PINS_INIT                                                                       \
    {                                                                                          \
        /* D2..D19 */                                                                          \
        P('E', 4), P('E', 5), P('G', 5), P('E', 3), P('H', 3), P('H', 4), P('H', 5), P('H', 6), \
        P('B', 4), P('B', 5), P('B', 6), P('B', 7), P('J', 1), P('J', 0), P('H', 1), P('H', 0), \
        P('D', 3), P('D', 2),                                                                  \
        /* D22..D29 PA0..7, D30..D37 PC7..0 */                                                 \
        P('A', 0), P('A', 1), P('A', 2), P('A', 3), P('A', 4), P('A', 5), P('A', 6), P('A', 7), \
        P('C', 7), P('C', 6), P('C', 5), P('C', 4), P('C', 3), P('C', 2), P('C', 1), P('C', 0), \
        /* D38 PD7, D39..D41 PG2..0, D42..D49 PL7..0, D50..D53 PB3..0 */                       \
        P('D', 7), P('G', 2), P('G', 1), P('G', 0), P('L', 7), P('L', 6), P('L', 5), P('L', 4), \
        P('L', 3), P('L', 2), P('L', 1), P('L', 0), P('B', 3), P('B', 2), P('B', 1), P('B', 0), \
        /* D54..D61 PF0..7 (A0..A7), D62..D69 PK0..7 (A8..A15) */                              \
        P('F', 0), P('F', 1), P('F', 2), P('F', 3), P('F', 4), P('F', 5), P('F', 6), P('F', 7), \
        P('K', 0), P('K', 1), P('K', 2), P('K', 3), P('K', 4), P('K', 5), P('K', 6), P('K', 7), \
    }

#endif

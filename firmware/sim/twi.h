/* TWI (I2C) master of the ATmega2560 for the simavr harness, in place of simavr 1.6's
 * own: that one answers SLA+W with status 0x28 (the code of a data byte; the hardware
 * gives 0x18) and sets TWINT two cycles after the address is written, so a firmware
 * that checks the status gives up, and no bus time passes. This model takes over the
 * TWCR/TWDR/TWSR writes and runs each bus step for as long as the hardware does, from
 * TWBR and the TWPS prescaler: SCL period P = 16 + 2 * TWBR * 4^TWPS CPU cycles (40 at
 * TWBR 12: 400 kHz); START 1 P, a byte with its ACK 9 P, STOP 1 P (then 1 P of bus free
 * time before the next START). TWINT is set (and the TWI interrupt raised) when a step
 * ends, with the status code of the ATmega2560 datasheet (master transmitter/receiver).
 * The slaves are called at the end of each step: the ACK of a byte, the STOP. */
#ifndef RP_SIM_TWI_H
#define RP_SIM_TWI_H

#include <stdint.h>
#include <stdio.h>

#include "sim_avr.h"

typedef struct {
    int (*address)(uint8_t sla);  /* SLA+R/W (8 bits): 1 = some slave ACKs */
    int (*write)(uint8_t byte);   /* a data byte: 1 = ACK */
    uint8_t (*read)(void);        /* a byte for the master (0xFF: nobody drives SDA) */
    void (*stop)(void);           /* a STOP condition */
} twi_slaves_t;

int twi_master_attach(avr_t *avr, const twi_slaves_t *slaves);

/* After an MCU reset (avr_reset): the module back to its reset state; the slaves keep
 * theirs, as the chips on a real bus do. */
void twi_master_reset(void);

/* "# twi ..." exit line: SCL period, steps, the longest transaction START..STOP. */
void twi_master_report(FILE *f);

#endif

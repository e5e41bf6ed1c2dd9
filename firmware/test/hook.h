/* Included into every file of the test_core build: the enqueue hook's prototype. */
#include <stdint.h>
void test_enqueue_hook(uint32_t index, uint32_t clock, uint8_t op, uint16_t n, int32_t level,
                       uint16_t pulse, uint16_t hold);

/* Prints what <shunt.h>, the generated header of the runtime's ABI, says,
 * so that the test can compare it with the Rust definitions; and the gate's
 * address, which libshunt.so in this process answers. */
#include <stddef.h>
#include <stdio.h>

#include <shunt.h>

int main(void) {
    printf("at_shunt_entry %llu\n", (unsigned long long)AT_SHUNT_ENTRY);
    printf("magic %llu\n", (unsigned long long)SHUNT_SEGMENT_MAGIC);
    printf("version %d\n", SHUNT_SEGMENT_VERSION);
    printf("segment_size %llu\n", (unsigned long long)SHUNT_SEGMENT_SIZE);
    printf("cell_gate_passthrough %d\n", (int)(SHUNT_ENTRY_GATE * 3 + SHUNT_ANSWER_PASSTHROUGH));
    printf("header_size %zu\n", sizeof(shunt_segment_header));
    printf("slots_high %zu\n", offsetof(shunt_segment_header, slots_high));
    printf("program %zu\n", offsetof(shunt_segment_header, program));
    printf("transport %zu\n", offsetof(shunt_segment_header, transport));
    printf("waits %zu\n", offsetof(shunt_segment_header, waits));
    printf("gate_nonzero %d\n", shunt_gate_address() != 0);
    return 0;
}

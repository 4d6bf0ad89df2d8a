/*
 * fbuild's thin layer over libsimavr: the few calls the Rust side needs, with
 * every simavr struct kept on this side of the boundary (their layout comes
 * from the installed headers, so Rust never has to mirror it).
 *
 * What it adds to simavr:
 * - simulated time only: the sleep callback does not sleep, and the UART's
 *   poll-sleep and console printing are switched off;
 * - UART0 output collected as exact bytes; --input fed to UART0's receiver
 *   whenever the firmware has it enabled and its FIFO has room;
 * - crash detection simavr leaves to its log: an invalid opcode, a stack
 *   pointer below the start of RAM (stack grown into the I/O registers and
 *   CPU registers).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_avr.h"
#include "sim_hex.h"
#include "avr_uart.h"
#include "avr_eeprom.h"
#include "avr_watchdog.h"

/* The UART's receive FIFO accessors (static inline in simavr's header). */
DEFINE_FIFO(uint16_t, uart_fifo);

/* simavr's table of the MCUs it models (NULL-terminated); not in its headers. */
extern avr_kind_t *avr_kind[];

enum {
	FBSIM_RUNNING = 0, /* time limit reached, or output waiting to be read */
	FBSIM_HALTED = 1,  /* slept with interrupts off: the firmware stopped itself */
	FBSIM_CRASHED = 2, /* see fbsim_reason() */
};

typedef struct fbsim {
	avr_t *avr;
	avr_uart_t *uart;    /* UART0 (or the first UART when there is no UART0) */
	avr_irq_t *uart_irq; /* its IRQ block */
	uint8_t *input;
	size_t input_len, input_pos;
	uint8_t *out;
	size_t out_len, out_cap;
	int crashed;
	char reason[512];
} fbsim;

static void set_reason(fbsim *s, const char *text)
{
	if (s->reason[0])
		return; /* the first cause is the one to report */
	/* drop simavr's colour codes and the trailing newline */
	size_t o = 0;
	for (const char *p = text; *p && o + 1 < sizeof(s->reason); p++) {
		if (*p == '\033') {
			while (*p && *p != 'm')
				p++;
			if (!*p)
				break;
			continue;
		}
		if (*p == '\n' || *p == '\r')
			continue;
		s->reason[o++] = *p;
	}
	while (o > 0 && s->reason[o - 1] == ' ')
		o--;
	s->reason[o] = 0;
}

static void fbsim_logger(avr_t *avr, const int level, const char *format, va_list ap)
{
	if (!avr || level > LOG_ERROR)
		return;
	fbsim *s = (fbsim *)avr->custom.data;
	if (!s)
		return;
	char line[512];
	vsnprintf(line, sizeof(line), format, ap);
	/* "CORE: *** ..." is how simavr reports an invalid opcode or an access
	 * outside RAM; it keeps running after an invalid opcode, we do not. */
	if (strstr(line, "CORE: ***")) {
		set_reason(s, line);
		s->crashed = 1;
	}
	/* Logged by simavr's crash handler while the faulting PC is still set;
	 * without a CORE message first, the PC left the flash. */
	if (strstr(line, "avr_sadly_crashed") && !s->reason[0] && avr->pc >= avr->flashend) {
		snprintf(line, sizeof(line), "jumped outside flash: PC=0x%05x, flash ends at 0x%05x", avr->pc, avr->flashend);
		set_reason(s, line);
	}
}

static void fbsim_no_sleep(avr_t *avr, avr_cycle_count_t how_long)
{
	/* Simulated time only: simavr's default sleeps in real time here. */
	(void)avr;
	(void)how_long;
}

static void fbsim_uart_output(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	fbsim *s = (fbsim *)param;
	if (s->out_len == s->out_cap) {
		size_t cap = s->out_cap ? s->out_cap * 2 : 256;
		uint8_t *grown = realloc(s->out, cap);
		if (!grown)
			return;
		s->out = grown;
		s->out_cap = cap;
	}
	s->out[s->out_len++] = (uint8_t)value;
}

int fbsim_mcu_known(const char *name)
{
	for (int i = 0; avr_kind[i]; i++)
		for (int j = 0; j < 4 && avr_kind[i]->names[j]; j++)
			if (!strcmp(avr_kind[i]->names[j], name))
				return 1;
	return 0;
}

/* Every MCU name simavr models, space-separated; returns the length needed. */
size_t fbsim_mcu_names(char *buf, size_t cap)
{
	size_t len = 0;
	for (int i = 0; avr_kind[i]; i++)
		for (int j = 0; j < 4 && avr_kind[i]->names[j]; j++) {
			const char *n = avr_kind[i]->names[j];
			size_t l = strlen(n);
			if (buf && len + l + 2 <= cap) {
				if (len)
					buf[len++] = ' ';
				memcpy(buf + len, n, l);
				buf[len + l] = 0;
				len += l;
			} else {
				len += l + 1;
			}
		}
	return len;
}

fbsim *fbsim_new(const char *mcu, uint32_t frequency)
{
	if (!fbsim_mcu_known(mcu))
		return NULL;
	avr_global_logger_set(fbsim_logger);
	fbsim *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->avr = avr_make_mcu_by_name(mcu);
	if (!s->avr) {
		free(s);
		return NULL;
	}
	s->avr->custom.data = s;
	avr_init(s->avr);
	s->avr->frequency = frequency;
	s->avr->sleep = fbsim_no_sleep;
	s->avr->log = LOG_ERROR;

	/* UART0, or the lowest-numbered UART (an ATmega32U4 has only UART1). */
	for (avr_io_t *io = s->avr->io_port; io; io = io->next) {
		if (strcmp(io->kind, "uart"))
			continue;
		avr_uart_t *u = (avr_uart_t *)io;
		if (!s->uart || u->name < s->uart->name)
			s->uart = u;
	}
	if (s->uart) {
		uint32_t flags = 0; /* no console printing, no real-time poll sleep */
		avr_ioctl(s->avr, AVR_IOCTL_UART_SET_FLAGS(s->uart->name), &flags);
		s->uart_irq = avr_io_getirq(s->avr, AVR_IOCTL_UART_GETIRQ(s->uart->name), 0);
		if (s->uart_irq)
			avr_irq_register_notify(s->uart_irq + UART_IRQ_OUTPUT, fbsim_uart_output, s);
	}
	return s;
}

char fbsim_uart_name(fbsim *s)
{
	return s->uart_irq ? s->uart->name : 0;
}

/* Load an Intel HEX file into flash (eeprom = 0) or EEPROM (eeprom = 1). */
int fbsim_load_hex(fbsim *s, const char *path, int eeprom)
{
	ihex_chunk_p chunks = NULL;
	int n = read_ihex_chunks(path, &chunks);
	if (n < 0) {
		snprintf(s->reason, sizeof(s->reason), "cannot read %s as Intel HEX", path);
		return -1;
	}
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		uint32_t end = chunks[i].baseaddr + chunks[i].size;
		if (!eeprom) {
			if (end > s->avr->flashend + 1) {
				snprintf(s->reason, sizeof(s->reason),
						"%s: %u bytes of code do not fit the %u bytes of flash", path, end, s->avr->flashend + 1);
				rc = -1;
				break;
			}
			avr_loadcode(s->avr, chunks[i].data, chunks[i].size, chunks[i].baseaddr);
		} else {
			if (end > s->avr->e2end + 1) {
				snprintf(s->reason, sizeof(s->reason),
						"%s: %u bytes do not fit the %u bytes of EEPROM", path, end, s->avr->e2end + 1);
				rc = -1;
				break;
			}
			avr_eeprom_desc_t d = { .ee = chunks[i].data, .offset = (uint16_t)chunks[i].baseaddr, .size = chunks[i].size };
			avr_ioctl(s->avr, AVR_IOCTL_EEPROM_SET, &d);
		}
	}
	free_ihex_chunks(chunks);
	return rc;
}

void fbsim_set_input(fbsim *s, const uint8_t *data, size_t len)
{
	free(s->input);
	s->input = len ? malloc(len) : NULL;
	if (s->input)
		memcpy(s->input, data, len);
	s->input_len = s->input ? len : 0;
	s->input_pos = 0;
}

/* Hand the UART receiver what it can take: bytes sent while the firmware has
 * not enabled it would be lost, as on a real board, so they wait. */
static void feed_input(fbsim *s)
{
	if (!s->uart_irq || s->input_pos >= s->input_len)
		return;
	while (s->input_pos < s->input_len && avr_regbit_get(s->avr, s->uart->rxen) && !uart_fifo_isfull(&s->uart->input))
		avr_raise_irq(s->uart_irq + UART_IRQ_INPUT, s->input[s->input_pos++]);
}

/* The first data-space address past the I/O registers: a stack pointer below
 * it means the stack has grown into I/O and CPU registers. */
static uint16_t ram_start(avr_t *avr)
{
	return avr->ioend + 1;
}

/* Run until `until_cycle`, until UART output is waiting, or until the
 * firmware stops or crashes. */
int fbsim_run(fbsim *s, uint64_t until_cycle)
{
	avr_t *avr = s->avr;
	while (avr->cycle < until_cycle) {
		feed_input(s);
		int state = avr_run(avr);
		if (s->crashed || state == cpu_Crashed) {
			if (!s->reason[0])
				snprintf(s->reason, sizeof(s->reason), "simavr stopped the CPU at PC=0x%05x", avr->pc);
			return FBSIM_CRASHED;
		}
		uint16_t sp = avr->data[R_SPL] | (avr->data[R_SPH] << 8);
		if (sp < ram_start(avr)) {
			snprintf(s->reason, sizeof(s->reason),
					"stack overflow: SP=0x%04x is below the start of RAM (0x%04x), into the registers; PC=0x%04x",
					sp, ram_start(avr), avr->pc);
			return FBSIM_CRASHED;
		}
		if (state == cpu_Done)
			return FBSIM_HALTED;
		if (s->out_len)
			return FBSIM_RUNNING;
	}
	return FBSIM_RUNNING;
}

uint64_t fbsim_cycle(fbsim *s)
{
	return s->avr->cycle;
}

uint32_t fbsim_pc(fbsim *s)
{
	return s->avr->pc;
}

/* Output collected since the last call; valid until the next fbsim_run. */
size_t fbsim_take_output(fbsim *s, const uint8_t **bytes)
{
	size_t n = s->out_len;
	*bytes = s->out;
	s->out_len = 0;
	return n;
}

size_t fbsim_input_left(fbsim *s)
{
	return s->input_len - s->input_pos;
}

const char *fbsim_reason(fbsim *s)
{
	return s->reason;
}

void fbsim_free(fbsim *s)
{
	if (!s)
		return;
	avr_terminate(s->avr);
	free(s->input);
	free(s->out);
	free(s);
}

/*
 * board-sim support (src/emulator/board_sim.rs): a board whose chip keeps
 * running, is reset by its serial port, and is written by its own bootloader.
 */

/* Queue bytes for UART0's receiver behind any not yet taken (the serial line
 * of a board that runs for as long as it is connected). */
void fbsim_append_input(fbsim *s, const uint8_t *data, size_t len)
{
	size_t left = s->input_len - s->input_pos;
	uint8_t *grown = malloc(left + len ? left + len : 1);
	if (!grown)
		return;
	if (left)
		memcpy(grown, s->input + s->input_pos, left);
	memcpy(grown + left, data, len);
	free(s->input);
	s->input = grown;
	s->input_len = left + len;
	s->input_pos = 0;
}

/* Reset the chip as its reset pin, a power-up or a crash does: the CPU starts
 * at `reset_pc` (the boot section when BOOTRST is programmed), bytes on the
 * line are lost, and MCUSR gains `mcusr_flags` (EXTRF for the reset pin, PORF
 * at power-up) so the bootloader can tell a reset from a watchdog expiry. */
void fbsim_reset(fbsim *s, uint32_t reset_pc, uint8_t mcusr_flags)
{
	avr_t *avr = s->avr;
	avr->reset_pc = reset_pc;
	avr_reset(avr);
	avr->pc = reset_pc;
	avr->state = cpu_Running;
	s->crashed = 0;
	s->reason[0] = 0;
	s->input_pos = s->input_len;
	for (avr_io_t *io = avr->io_port; io; io = io->next) {
		if (strcmp(io->kind, "watchdog"))
			continue;
		avr_watchdog_t *wd = (avr_watchdog_t *)io;
		if (wd->wdrf.reg)
			avr->data[wd->wdrf.reg] |= mcusr_flags;
	}
}

/* Flash written from outside the CPU: the bootloader image, and the test seam
 * of a cell stuck at one value (board-sim's SIGUSR1). */
void fbsim_flash_write(fbsim *s, uint32_t addr, uint8_t value)
{
	if (addr <= s->avr->flashend)
		s->avr->flash[addr] = value;
}

/*
 * insncount: a QEMU TCG plugin (qemu-user, plugin API version 1 and later)
 * that counts the guest instructions each thread executes, for
 * benches/arm-insn-count.sh.
 *
 * Why a plugin of our own: the script needs three things at once that none
 * of QEMU's example plugins gives together:
 *   - marks: at every `mark` system call (default: clock_gettime, 113 on
 *     aarch64, with clock id 1 = CLOCK_MONOTONIC, i.e. Rust's Instant::now)
 *     it prints the calling thread's instruction count so far, so the
 *     instructions between two Instant::now() calls of `pvtherm bench` (one
 *     timed stage call) can be taken apart from start-up and model loading;
 *   - classes: how many multiply-accumulate instructions of each kind ran
 *     (SDOT/UDOT, SMLAL, MLA, FMLA), which tells which tract-linalg matrix
 *     kernel ran without symbols (the release binary is stripped);
 *   - hot blocks: the translation blocks that executed the most
 *     instructions, with their class counts, to attribute the total; and
 *     per thread, the instructions executed in "MAC blocks" (blocks with at
 *     least MAC_BLOCK class instructions: the matrix kernels' inner loops).
 *
 * Arguments (-plugin insncount.so,arg=value,...):
 *   out=FILE     where to write (default: QEMU's log, i.e. stderr)
 *   mark=NR[:A0] system call number that marks, optionally only when its
 *                first argument equals A0 (default 113:1); mark=none: none
 *   top=N        hot blocks to print at exit (default 20)
 *   disas=on|off disassemble the blocks that hold class instructions and
 *                print that after their block line (default on)
 *   window=K:L   count the block executions of the hot-block list only
 *                while thread vCPU 0 has passed at least K and fewer than L
 *                marks (e.g. the timed calls of one stage, found in a first
 *                run: the mark sequence of a run is deterministic)
 *
 * Output lines (all counts are guest instructions):
 *   mark VCPU TID COUNT [NAME=N ...] macblk=M
 *                            COUNT = that thread's instructions until now,
 *                            N = its instructions of each class until now,
 *                            M = its instructions in MAC blocks until now
 *   code VADDR                where the main binary's first executable
 *                            segment was loaded (minus that segment's ELF
 *                            p_vaddr: the load bias, for objdump addresses)
 *   total COUNT
 *   vcpu VCPU COUNT
 *   class NAME COUNT
 *   block VADDR INSNS EXECS EXECUTED [NAME=N ...] [| INSN; INSN; ...]
 *                            EXECS, EXECUTED: inside the window if one is set
 *                            NAME=N: class instructions per execution
 *
 * The count is per translation block entered: a block left early (a fault
 * inside it) still counts whole. In qemu-user that is only signals, which
 * `pvtherm bench` does not take.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* Threads are vCPUs in qemu-user; one counter slot each, indexed by vCPU. */
#define MAX_VCPUS 1024

/*
 * A block with this many multiply-accumulates is a matrix kernel's inner loop
 * (tract-linalg's have 16 to 64); compiled Rust code has the odd one.
 */
#define MAC_BLOCK 8

/*
 * An instruction class: the A64 encodings matched by (word & mask) == value.
 * Vector and by-element forms of each; checked with llvm-mc -show-encoding.
 */
struct insn_class {
    const char *name;
    uint32_t mask;
    uint32_t value;
};

static const struct insn_class classes[] = {
    { "sdot", 0xbfc0f400, 0x0f80e000 },   /* SDOT Vd.4S, Vn.16B, Vm.4B[i] */
    { "sdot", 0xbfe0fc00, 0x0e809400 },   /* SDOT Vd.4S, Vn.16B, Vm.16B */
    { "udot", 0xbfc0f400, 0x2f80e000 },   /* UDOT by element */
    { "udot", 0xbfe0fc00, 0x2e809400 },   /* UDOT vector */
    { "smlal", 0xbf00f400, 0x0f002000 },  /* SMLAL{2} by element */
    { "smlal", 0xbf20fc00, 0x0e208000 },  /* SMLAL{2} vector */
    { "mla", 0xbf00f400, 0x2f000000 },    /* MLA by element */
    { "mla", 0xbf20fc00, 0x0e209400 },    /* MLA vector */
    { "fmla", 0xbf80f400, 0x0f801000 },   /* FMLA by element, single/double */
    { "fmla", 0xbfa0fc00, 0x0e20cc00 },   /* FMLA vector, single/double */
};
#define N_CLASSES (sizeof(classes) / sizeof(classes[0]))

/* Distinct class names, in first-seen order of the table above. */
static const char *class_names[N_CLASSES];
static unsigned n_class_names;
/* classes[i] counts into class_names[class_slot[i]]. */
static unsigned class_slot[N_CLASSES];

/*
 * What one translated block is: its size, its instructions of each class
 * (indexed like class_names) and how often it ran.
 */
struct block {
    uint64_t vaddr;
    uint32_t n_insns;
    int has_class;
    int mac_block; /* at least MAC_BLOCK class instructions */
    uint32_t class_count[N_CLASSES];
    uint64_t execs; /* updated atomically: several threads run one block */
    char *disas;    /* "insn; insn; ..." when has_class and disas=on */
};

static uint64_t vcpu_insns[MAX_VCPUS];
static uint64_t vcpu_class[MAX_VCPUS][N_CLASSES];
static uint64_t vcpu_macblk[MAX_VCPUS];
static uint64_t overflow_insns; /* atomically: vCPUs past MAX_VCPUS */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct block **blocks; /* every block translated, under `lock` */
static size_t n_blocks, cap_blocks;

static FILE *out;
static int64_t mark_nr = 113;
static int mark_has_a0 = 1;
static uint64_t mark_a0 = 1;
static unsigned top_n = 20;
static bool want_disas = true;
static bool windowed;
static uint64_t window_from, window_to;
static uint64_t marks_passed;  /* by vCPU 0 */
static volatile int window_on; /* written by vCPU 0 only */

/* Writes one line to `out`, or to QEMU's log when no file was given. */
static void emit(const char *line)
{
    if (out) {
        pthread_mutex_lock(&lock);
        fputs(line, out);
        pthread_mutex_unlock(&lock);
    } else {
        qemu_plugin_outs(line);
    }
}

/* The running thread's count so far. */
static uint64_t vcpu_count(unsigned vcpu)
{
    return vcpu < MAX_VCPUS ? vcpu_insns[vcpu] : 0;
}

/* Block entry: add its instructions to the thread that runs it. */
static void on_block_exec(unsigned int vcpu, void *udata)
{
    struct block *b = udata;
    if (vcpu < MAX_VCPUS) {
        vcpu_insns[vcpu] += b->n_insns; /* one thread per vCPU: no race */
        if (b->has_class) {
            for (unsigned k = 0; k < n_class_names; k++) {
                vcpu_class[vcpu][k] += b->class_count[k];
            }
            if (b->mac_block) {
                vcpu_macblk[vcpu] += b->n_insns;
            }
        }
    } else {
        __atomic_fetch_add(&overflow_insns, b->n_insns, __ATOMIC_RELAXED);
    }
    if (!windowed || window_on) {
        __atomic_fetch_add(&b->execs, 1, __ATOMIC_RELAXED);
    }
}

/* The block's instructions as "insn; insn; ...", malloc'ed (NULL if no memory). */
static char *block_disas(struct qemu_plugin_tb *tb, size_t n)
{
    size_t len = 0, cap = 64 * n + 1;
    char *text = malloc(cap);
    if (!text) {
        return NULL;
    }
    text[0] = 0;
    for (size_t i = 0; i < n; i++) {
        char *insn = qemu_plugin_insn_disas(qemu_plugin_tb_get_insn(tb, i));
        size_t need = strlen(insn) + 3;
        if (len + need >= cap) {
            char *grown = realloc(text, cap = 2 * (len + need));
            if (!grown) {
                free(insn);
                break;
            }
            text = grown;
        }
        len += (size_t)sprintf(text + len, "%s%s", i ? "; " : "", insn);
        free(insn); /* g_malloc'ed: glib allocates with the system malloc */
    }
    return text;
}

/* Translation: classify the block's instructions once, count at each entry. */
static void on_block_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    struct block *b = calloc(1, sizeof(*b));
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (!b) {
        return;
    }
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->n_insns = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t word;
        if (qemu_plugin_insn_size(insn) != 4) {
            continue;
        }
        memcpy(&word, qemu_plugin_insn_data(insn), 4);
        for (size_t c = 0; c < N_CLASSES; c++) {
            if ((word & classes[c].mask) == classes[c].value) {
                b->class_count[class_slot[c]]++;
                b->has_class = 1;
                break;
            }
        }
    }
    for (unsigned k = 0, sum = 0; k < n_class_names; k++) {
        sum += b->class_count[k];
        b->mac_block = sum >= MAC_BLOCK;
    }
    if (b->has_class && want_disas) {
        b->disas = block_disas(tb, n);
    }
    pthread_mutex_lock(&lock);
    if (n_blocks == cap_blocks) {
        size_t cap = cap_blocks ? cap_blocks * 2 : 4096;
        struct block **grown = realloc(blocks, cap * sizeof(*blocks));
        if (!grown) {
            pthread_mutex_unlock(&lock);
            free(b);
            return;
        }
        blocks = grown;
        cap_blocks = cap;
    }
    blocks[n_blocks++] = b;
    pthread_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block_exec,
                                         QEMU_PLUGIN_CB_NO_REGS, b);
}

/* System call entry: print a mark when it is the marking call. */
static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num,
                       uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                       uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    char line[512];
    if (num != mark_nr || (mark_has_a0 && a1 != mark_a0)) {
        return;
    }
    snprintf(line, sizeof(line), "mark %u %ld %" PRIu64, vcpu,
             (long)syscall(SYS_gettid), vcpu_count(vcpu));
    for (unsigned k = 0; vcpu < MAX_VCPUS && k < n_class_names; k++) {
        size_t used = strlen(line);
        snprintf(line + used, sizeof(line) - used, " %s=%" PRIu64,
                 class_names[k], vcpu_class[vcpu][k]);
    }
    if (vcpu < MAX_VCPUS) {
        size_t used = strlen(line);
        snprintf(line + used, sizeof(line) - used, " macblk=%" PRIu64 "\n",
                 vcpu_macblk[vcpu]);
    } else {
        strcat(line, "\n");
    }
    emit(line);
    if (vcpu == 0) {
        marks_passed++;
        window_on = marks_passed >= window_from && marks_passed < window_to;
    }
}

/* Blocks of one address merged (a block may be translated again). */
struct merged {
    uint64_t vaddr;
    uint32_t n_insns;
    uint64_t execs;
    uint64_t executed;
    uint32_t class_count[N_CLASSES];
    const char *disas;
};

static int by_vaddr(const void *a, const void *b)
{
    const struct block *x = *(struct block *const *)a;
    const struct block *y = *(struct block *const *)b;
    return x->vaddr < y->vaddr ? -1 : x->vaddr > y->vaddr;
}

static int by_executed_desc(const void *a, const void *b)
{
    const struct merged *x = a, *y = b;
    return x->executed > y->executed ? -1 : x->executed < y->executed;
}

/* Appends " name=count" for each class of one block (per execution). */
static void append_classes(char *line, size_t size, const uint32_t *count)
{
    for (unsigned k = 0; k < n_class_names; k++) {
        size_t used = strlen(line);
        if (count[k] && used < size) {
            snprintf(line + used, size - used, " %s=%u", class_names[k],
                     count[k]);
        }
    }
}

/* Exit: totals, per thread, per class, and the hot blocks. */
static void on_exit_report(qemu_plugin_id_t id, void *p)
{
    char line[512];
    uint64_t total = __atomic_load_n(&overflow_insns, __ATOMIC_RELAXED);
    struct merged *m;
    size_t n_merged = 0;

    for (unsigned v = 0; v < MAX_VCPUS; v++) {
        total += vcpu_insns[v];
    }
    snprintf(line, sizeof(line), "code 0x%" PRIx64 "\n",
             qemu_plugin_start_code());
    emit(line);
    snprintf(line, sizeof(line), "total %" PRIu64 "\n", total);
    emit(line);
    for (unsigned v = 0; v < MAX_VCPUS; v++) {
        if (vcpu_insns[v]) {
            snprintf(line, sizeof(line), "vcpu %u %" PRIu64 "\n", v,
                     vcpu_insns[v]);
            emit(line);
        }
    }

    pthread_mutex_lock(&lock);
    qsort(blocks, n_blocks, sizeof(*blocks), by_vaddr);
    m = calloc(n_blocks ? n_blocks : 1, sizeof(*m));
    for (size_t i = 0; m && i < n_blocks; i++) {
        const struct block *b = blocks[i];
        uint64_t execs = __atomic_load_n(&b->execs, __ATOMIC_RELAXED);
        if (n_merged == 0 || m[n_merged - 1].vaddr != b->vaddr ||
            m[n_merged - 1].n_insns != b->n_insns) {
            m[n_merged].vaddr = b->vaddr;
            m[n_merged].n_insns = b->n_insns;
            memcpy(m[n_merged].class_count, b->class_count,
                   sizeof(b->class_count));
            m[n_merged].disas = b->disas;
            n_merged++;
        }
        m[n_merged - 1].execs += execs;
        m[n_merged - 1].executed += execs * b->n_insns;
    }
    pthread_mutex_unlock(&lock);

    for (unsigned k = 0; k < n_class_names; k++) {
        uint64_t sum = 0;
        for (unsigned v = 0; v < MAX_VCPUS; v++) {
            sum += vcpu_class[v][k];
        }
        snprintf(line, sizeof(line), "class %s %" PRIu64 "\n", class_names[k],
                 sum);
        emit(line);
    }
    if (m) {
        qsort(m, n_merged, sizeof(*m), by_executed_desc);
        for (size_t i = 0; i < n_merged && i < top_n; i++) {
            snprintf(line, sizeof(line),
                     "block 0x%" PRIx64 " %u %" PRIu64 " %" PRIu64, m[i].vaddr,
                     m[i].n_insns, m[i].execs, m[i].executed);
            append_classes(line, sizeof(line), m[i].class_count);
            emit(line);
            if (m[i].disas) {
                emit(" | ");
                emit(m[i].disas);
            }
            emit("\n");
        }
        free(m);
    }
    if (out) {
        fclose(out);
        out = NULL;
    }
}

/* Parses mark=NR[:A0] or mark=none; 0 on success. */
static int parse_mark(const char *v)
{
    char *end;
    if (strcmp(v, "none") == 0) {
        mark_nr = -1;
        return 0;
    }
    mark_nr = strtoll(v, &end, 0);
    if (end == v) {
        return -1;
    }
    mark_has_a0 = *end == ':';
    if (mark_has_a0) {
        mark_a0 = strtoull(end + 1, &end, 0);
    }
    return *end ? -1 : 0;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
                                           const qemu_info_t *info, int argc,
                                           char **argv)
{
    for (size_t c = 0; c < N_CLASSES; c++) {
        unsigned k = 0;
        while (k < n_class_names && strcmp(class_names[k], classes[c].name)) {
            k++;
        }
        if (k == n_class_names) {
            class_names[n_class_names++] = classes[c].name;
        }
        class_slot[c] = k;
    }
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        const char *v = eq ? eq + 1 : "";
        size_t klen = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        if (klen == 3 && strncmp(argv[i], "out", 3) == 0) {
            out = fopen(v, "w");
            if (!out) {
                fprintf(stderr, "insncount: cannot write %s\n", v);
                return -1;
            }
        } else if (klen == 4 && strncmp(argv[i], "mark", 4) == 0) {
            if (parse_mark(v)) {
                fprintf(stderr, "insncount: mark=%s: want NR, NR:ARG0 or none\n",
                        v);
                return -1;
            }
        } else if (klen == 3 && strncmp(argv[i], "top", 3) == 0) {
            top_n = (unsigned)strtoul(v, NULL, 0);
        } else if (klen == 6 && strncmp(argv[i], "window", 6) == 0) {
            char *end;
            window_from = strtoull(v, &end, 0);
            if (*end != ':' || (window_to = strtoull(end + 1, &end, 0), *end)) {
                fprintf(stderr, "insncount: window=%s: want K:L\n", v);
                return -1;
            }
            windowed = true;
        } else if (klen == 5 && strncmp(argv[i], "disas", 5) == 0) {
            if (!qemu_plugin_bool_parse("disas", v, &want_disas)) {
                fprintf(stderr, "insncount: disas=%s: want on or off\n", v);
                return -1;
            }
        } else {
            fprintf(stderr,
                    "insncount: unknown argument %s (known: out=, mark=, top=, disas=, window=)\n",
                    argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_block_trans);
    if (mark_nr >= 0) {
        qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    }
    qemu_plugin_register_atexit_cb(id, on_exit_report, NULL);
    return 0;
}

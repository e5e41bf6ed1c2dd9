/* The fingering search (robo_player/planner/fingering.py, ``_search_py``) in C.
 *
 * The same search, step for step, with the same floating-point operations in the same
 * order (built with -ffp-contract=off: no fused multiply-add), so it returns the same
 * choice and the same total as the Python one: tests/test_fingering_c.py runs both on
 * random inputs and requires equality. fingering.search calls this module when it was
 * built (`pip install .` / `pip install -e .`; setup.py marks it optional) and the
 * Python search otherwise.
 *
 * What is the same as in Python: the transition (fingering.make_core), the expansion of
 * an onset of one note (fingering._expand_single, with its window cap) and of a chord
 * (fingering._expand_multi), the order of candidates (cost, back index, fingering), the
 * fold of times older than the onset's limit (fingering.fold_limits, passed in), the
 * keep loop (the cheapest candidate per state, at most ``beam``, none past the cheapest
 * + ``window``) and the back-tracking. String states are interned as ints here too; the
 * ids differ from Python's, which changes nothing (states are compared for equality only).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t i64;

#define NEG (-(((i64)1) << 60)) /* fingering.NEG */
#define FOLDED (((i64)1) << 62) /* fingering.FOLDED */
#define MAX_STRINGS 16
#ifndef SOURCE_SHA256
#define SOURCE_SHA256 "" /* setup.py defines it: this file's SHA-256 when built */
#endif

/* ---------------------------------------------------------------- interned string states */

typedef struct {
    i64 *ss;       /* 6 per id: carriage, last fret, pick, sound, end, free */
    i64 *last;     /* the latest time it holds (FOLDED: none) */
    int32_t *fold; /* its folded id (-1: not made yet) */
    int32_t *table;/* open addressing: id + 1, 0 empty */
    size_t n, cap, tcap;
} Interner;

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 29);
}

static uint64_t hash6(const i64 *v) {
    uint64_t h = 0;
    for (int i = 0; i < 6; i++) h = mix(h, (uint64_t)v[i]);
    return h;
}

static void it_free(Interner *it) {
    free(it->ss); free(it->last); free(it->fold); free(it->table);
    memset(it, 0, sizeof *it);
}

static int it_rehash(Interner *it, size_t tcap) {
    int32_t *t = calloc(tcap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < it->n; i++) {
        size_t h = hash6(it->ss + 6 * i) & (tcap - 1);
        while (t[h]) h = (h + 1) & (tcap - 1);
        t[h] = (int32_t)i + 1;
    }
    free(it->table);
    it->table = t;
    it->tcap = tcap;
    return 0;
}

/* the id of v (interned now if new); -1: out of memory */
static int32_t it_get(Interner *it, const i64 *v) {
    size_t mask = it->tcap - 1, h = hash6(v) & mask;
    for (;;) {
        int32_t e = it->table[h];
        if (!e) break;
        if (!memcmp(it->ss + 6 * (size_t)(e - 1), v, 6 * sizeof(i64))) return e - 1;
        h = (h + 1) & mask;
    }
    if (it->n == it->cap) {
        size_t cap = it->cap ? 2 * it->cap : 1024;
        i64 *ss = realloc(it->ss, 6 * cap * sizeof *ss);
        if (!ss) return -1;
        it->ss = ss;
        i64 *last = realloc(it->last, cap * sizeof *last);
        if (!last) return -1;
        it->last = last;
        int32_t *fold = realloc(it->fold, cap * sizeof *fold);
        if (!fold) return -1;
        it->fold = fold;
        it->cap = cap;
    }
    if (it->n > INT32_MAX - 2) return -1;
    size_t i = it->n++;
    memcpy(it->ss + 6 * i, v, 6 * sizeof(i64));
    i64 last = v[2];
    for (int q = 3; q < 6; q++) if (v[q] > last) last = v[q];
    it->last[i] = last == NEG ? FOLDED : last;
    it->fold[i] = last == NEG ? (int32_t)i : -1;
    if (2 * it->n >= it->tcap) {
        if (it_rehash(it, 2 * it->tcap) < 0) return -1;
    } else {
        it->table[h] = (int32_t)i + 1;
    }
    return (int32_t)i;
}

/* its folded id: every time forgotten, the carriage and last fret kept */
static int32_t it_folded(Interner *it, int32_t i) {
    int32_t f = it->fold[i];
    if (f < 0) {
        i64 v[6] = {it->ss[6 * (size_t)i], it->ss[6 * (size_t)i + 1], NEG, NEG, NEG, NEG};
        f = it_get(it, v);
        if (f < 0) return -1;
        it->fold[i] = f;
    }
    return f;
}

/* ---------------------------------------------------------------- the layout and costs */

typedef struct {
    int n, nf, slider;
    i64 min_repeat, min_sound, damp, release, settle, changeover;
    i64 margin, lift, clear, to_open; /* fingering.changeover_us's */
    i64 *settle_at; /* [s][f] */
    i64 *move;      /* [s][a][b] */
    double *travel; /* [s][a][b] */
    i64 *pitch_at;  /* [s][f] */
    double fret_ms, transpose_ms, cut_w, cut_note, change, infeasible;
} Ctx;

/* the transition (fingering.make_core): 1 and out/cost_out, or 0 (infeasible) */
static int core(const Ctx *cx, const i64 *ss, int s, int fret, i64 p, i64 sound, i64 end,
                double cost, i64 *out, double *cost_out) {
    i64 car = ss[0], pf = ss[1], lp = ss[2], ls = ss[3], lend = ss[4], fr = ss[5];
    size_t row = ((size_t)s * cx->nf + (size_t)car) * cx->nf + (size_t)fret;
    if (p - lp < cx->min_repeat) return 0;
    i64 r = sound - cx->margin;
    if (r < p) r = p;
    i64 cut = 0;
    if (pf == fret) {
        if (lend > sound) cut = lend - sound;
        out[0] = car; out[1] = fret; out[5] = fr;
    } else if (pf > 0) {
        i64 mv = fret > 0 ? cx->move[row] : 0;
        i64 need;
        if (mv) {
            need = cx->changeover + mv + cx->settle_at[(size_t)s * cx->nf + fret];
            if (need < cx->damp + cx->lift) need = cx->damp + cx->lift; /* the felt lifted too */
        } else if (fret > 0) {
            i64 st = cx->settle_at[(size_t)s * cx->nf + fret];
            need = cx->damp + (st > cx->clear ? st : cx->clear);
        } else {
            need = cx->to_open;
        }
        i64 start = r - need, off = lend;
        if (lend > start) {
            if (start < ls + cx->min_sound) return 0;
            cut = lend - start;
            off = start;
        }
        if (fret > 0) {
            if (mv) cost += cx->travel[row];
            out[0] = cx->slider ? fret : 0; out[1] = fret; out[5] = NEG;
        } else {
            out[0] = car; out[1] = 0; out[5] = off + cx->changeover;
        }
    } else if (fret == 0) {
        out[0] = car; out[1] = 0; out[5] = fr;
    } else {
        i64 st = cx->settle_at[(size_t)s * cx->nf + fret];
        i64 press = r - st;
        if (pf == 0) {
            i64 damp_at = r - (st > cx->lift ? st : cx->lift) - cx->damp;
            if (lend > damp_at) {
                if (damp_at < ls + cx->min_sound) return 0;
                cut = lend - damp_at;
            }
        }
        if (cx->slider && car != fret) {
            if (fr + cx->move[row] > press) return 0;
            cost += cx->travel[row];
        }
        out[0] = cx->slider ? fret : 0; out[1] = fret; out[5] = NEG;
    }
    out[2] = p; out[3] = sound; out[4] = end;
    if (cut) cost += (double)cut / 1000.0 * cx->cut_w + cx->cut_note;
    *cost_out = cost;
    return 1;
}

/* a fingering's fret pull and octave price (the sum the transition starts from) */
static double pull(const Ctx *cx, int s, int f, i64 pitch) {
    return (double)f * cx->fret_ms
           + (pitch >= 0 && cx->pitch_at[(size_t)s * cx->nf + f] != pitch ? cx->transpose_ms : 0.0);
}

/* ---------------------------------------------------------------- onsets */

typedef struct { i64 pick, sound, end, pitch; } SlotC;

typedef struct {
    int nslots, nfing;
    size_t slot0; /* into slots */
    size_t fing0; /* into fings: nfing * nslots (s, f) pairs */
} OnsetC;

/* ---------------------------------------------------------------- growable buffers */

/* grow ptr (cap elements) to hold need; out of memory: goto nomem */
#define GROW(ptr, cap, need)                                                          \
    do {                                                                              \
        if ((need) > (cap)) {                                                         \
            size_t nc_ = (cap) ? (cap) : 64;                                          \
            while (nc_ < (need)) nc_ *= 2;                                            \
            void *np_ = realloc((ptr), nc_ * sizeof *(ptr));                          \
            if (!np_) goto nomem;                                                     \
            (ptr) = np_;                                                              \
            (cap) = nc_;                                                              \
        }                                                                             \
    } while (0)

/* a candidate: (cost, back index j, fingering k); s >= 0: a note placed on string s,
 * its new string state x (interned only if kept); s = -1: the state is the chord's, at
 * ref in the scratch keys, or (ref = -1) j's own (the note cannot be played) */
typedef struct { double cost; int32_t j, k, s, ref; i64 x[6]; } Cand;

static int cand_cmp(const void *a, const void *b) {
    const Cand *x = a, *y = b;
    if (x->cost < y->cost) return -1;
    if (x->cost > y->cost) return 1;
    if (x->j != y->j) return x->j < y->j ? -1 : 1;
    return (x->k > y->k) - (x->k < y->k);
}

/* last: the octave option's price where two or more strings have the written pitch (its
 * window is ``window`` less that: a last resort), else 0 (fingering._expand_single) */
typedef struct { double lb, last; int32_t k, s, f; } Order;

static int order_cmp(const void *a, const void *b) {
    const Order *x = a, *y = b;
    if (x->lb < y->lb) return -1;
    if (x->lb > y->lb) return 1;
    return (x->k > y->k) - (x->k < y->k);
}

static uint64_t hash_key(const int32_t *key, int len) {
    uint64_t h = 0;
    for (int i = 0; i < len; i++) h = mix(h, (uint64_t)(uint32_t)key[i]);
    return h;
}

/* everything one search holds: the input, flat, and its working buffers (freed by ws_free) */
typedef struct {
    Ctx cx;
    Interner it;
    Py_ssize_t no;             /* onsets */
    OnsetC *ons;
    SlotC *slots;
    int32_t *fings;
    i64 *limits;
    int kl;                    /* a key: n interned string states, then the mask */
    int32_t *keys, *nkeys;     /* the layer, and the next */
    double *base, *nbase;      /* their paths' costs */
    size_t L;                  /* states in the layer */
    Cand *cands;
    Order *order;
    int32_t *scratch, *hset;
    int32_t *backs, *ks;       /* per onset (from hoff[i]): back index and fingering per state */
    size_t *hoff, hist_n;
    size_t slots_cap, fings_cap, keys_cap, nkeys_cap, base_cap, nbase_cap, cands_cap, order_cap;
    size_t scratch_cap, hset_cap, backs_cap, ks_cap;
} Work;

static void ws_free(Work *w) {
    free(w->cx.move); free(w->cx.travel); free(w->cx.pitch_at); free(w->cx.settle_at);
    it_free(&w->it);
    free(w->ons); free(w->slots); free(w->fings); free(w->limits);
    free(w->keys); free(w->nkeys); free(w->base); free(w->nbase);
    free(w->cands); free(w->order); free(w->scratch); free(w->hset);
    free(w->backs); free(w->ks); free(w->hoff);
}

/* ---------------------------------------------------------------- reading Python input */

static int get_i64(PyObject *o, const char *name, i64 *out) {
    PyObject *v = PyObject_GetAttrString(o, name);
    if (!v) return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}

/* attribute ``name`` of o as a fast sequence (a new reference), or NULL */
static PyObject *get_seq(PyObject *o, const char *name) {
    PyObject *v = PyObject_GetAttrString(o, name);
    if (!v) return NULL;
    PyObject *seq = PySequence_Fast(v, name);
    Py_DECREF(v);
    return seq;
}

/* a table [s][f] (depth 2, into iout) or [s][a][b] (depth 3, into iout or dout) */
static int read_table(PyObject *obj, int n, int nf, int depth, i64 *iout, double *dout) {
    PyObject *a = PySequence_Fast(obj, "a table must be a sequence");
    if (!a) return -1;
    int rc = -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(a);
    if (len != n) {
        PyErr_Format(PyExc_ValueError, "table has %zd rows, expected %d", len, n);
        goto done;
    }
    for (Py_ssize_t s = 0; s < len; s++) {
        PyObject *b = PySequence_Fast(PySequence_Fast_GET_ITEM(a, s), "a table row must be a sequence");
        if (!b) goto done;
        if (PySequence_Fast_GET_SIZE(b) != nf) {
            PyErr_Format(PyExc_ValueError, "table row has %zd entries, expected %d",
                         PySequence_Fast_GET_SIZE(b), nf);
            Py_DECREF(b);
            goto done;
        }
        for (Py_ssize_t r = 0; r < nf; r++) {
            PyObject *item = PySequence_Fast_GET_ITEM(b, r);
            if (depth == 2) {
                long long x = PyLong_AsLongLong(item);
                if (x == -1 && PyErr_Occurred()) { Py_DECREF(b); goto done; }
                iout[(size_t)s * nf + r] = x;
                continue;
            }
            PyObject *c = PySequence_Fast(item, "a table row must be a sequence");
            if (!c) { Py_DECREF(b); goto done; }
            if (PySequence_Fast_GET_SIZE(c) != nf) {
                PyErr_Format(PyExc_ValueError, "table row has %zd entries, expected %d",
                             PySequence_Fast_GET_SIZE(c), nf);
                Py_DECREF(c); Py_DECREF(b);
                goto done;
            }
            for (Py_ssize_t q = 0; q < nf; q++) {
                PyObject *item2 = PySequence_Fast_GET_ITEM(c, q);
                size_t at = ((size_t)s * nf + r) * nf + q;
                if (iout) {
                    long long x = PyLong_AsLongLong(item2);
                    if (x == -1 && PyErr_Occurred()) { Py_DECREF(c); Py_DECREF(b); goto done; }
                    iout[at] = x;
                } else {
                    double x = PyFloat_AsDouble(item2);
                    if (x == -1.0 && PyErr_Occurred()) { Py_DECREF(c); Py_DECREF(b); goto done; }
                    dout[at] = x;
                }
            }
            Py_DECREF(c);
        }
        Py_DECREF(b);
    }
    rc = 0;
done:
    Py_DECREF(a);
    return rc;
}

/* the Layout's tables and times into w->cx; -1 with an exception set */
static int read_layout(Work *w, PyObject *layout, PyObject *travel) {
    Ctx *cx = &w->cx;
    i64 tmp;
    if (get_i64(layout, "strings", &tmp) < 0) return -1;
    cx->n = (int)tmp;
    if (get_i64(layout, "frets", &tmp) < 0) return -1;
    cx->nf = (int)tmp + 1;
    if (cx->n < 1 || cx->n > MAX_STRINGS || cx->nf < 1 || cx->nf > 1000) {
        PyErr_Format(PyExc_ValueError, "layout of %d strings and %d frets: at most %d strings",
                     cx->n, cx->nf - 1, MAX_STRINGS);
        return -1;
    }
    PyObject *v = PyObject_GetAttrString(layout, "slider");
    if (!v) return -1;
    cx->slider = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (cx->slider < 0) return -1;
    if (get_i64(layout, "min_repeat_us", &cx->min_repeat) < 0 || get_i64(layout, "min_sound_us", &cx->min_sound) < 0
        || get_i64(layout, "damp_us", &cx->damp) < 0 || get_i64(layout, "release_us", &cx->release) < 0
        || get_i64(layout, "settle_us", &cx->settle) < 0 || get_i64(layout, "margin_us", &cx->margin) < 0
        || get_i64(layout, "lift_us", &cx->lift) < 0)
        return -1;
    cx->changeover = cx->damp + cx->release;
    cx->clear = cx->release > cx->lift ? cx->release : cx->lift;
    cx->to_open = cx->damp + cx->clear;
    size_t cells = (size_t)cx->n * cx->nf * cx->nf;
    cx->move = malloc(cells * sizeof *cx->move);
    cx->travel = malloc(cells * sizeof *cx->travel);
    cx->pitch_at = malloc((size_t)cx->n * cx->nf * sizeof *cx->pitch_at);
    cx->settle_at = malloc((size_t)cx->n * cx->nf * sizeof *cx->settle_at);
    if (!cx->move || !cx->travel || !cx->pitch_at || !cx->settle_at) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *mv = PyObject_GetAttrString(layout, "move_us");
    if (!mv) return -1;
    int rc = read_table(mv, cx->n, cx->nf, 3, cx->move, NULL);
    Py_DECREF(mv);
    if (rc < 0 || read_table(travel, cx->n, cx->nf, 3, NULL, cx->travel) < 0) return -1;
    PyObject *pa = PyObject_GetAttrString(layout, "pitch_at");
    if (!pa) return -1;
    rc = read_table(pa, cx->n, cx->nf, 2, cx->pitch_at, NULL);
    Py_DECREF(pa);
    if (rc < 0) return rc;
    PyObject *sa = PyObject_GetAttrString(layout, "settle_at");
    if (!sa) return -1;
    rc = read_table(sa, cx->n, cx->nf, 2, cx->settle_at, NULL);
    Py_DECREF(sa);
    return rc;
}

/* onset i's slots and fingerings, appended to w->slots and w->fings; -1 with an exception set */
static int read_onset(Work *w, Py_ssize_t i, PyObject *o) {
    const int n = w->cx.n, nf = w->cx.nf;
    int rc = -1;
    PyObject *sls = get_seq(o, "slots"), *fgs = NULL;
    if (!sls) return -1;
    Py_ssize_t ns = PySequence_Fast_GET_SIZE(sls);
    if (ns < 1 || ns > MAX_STRINGS) {
        PyErr_Format(PyExc_ValueError, "onset %zd has %zd notes", i, ns);
        goto done;
    }
    OnsetC *on = &w->ons[i];
    size_t s0 = i ? w->ons[i - 1].slot0 + (size_t)w->ons[i - 1].nslots : 0;
    size_t f0 = i ? w->ons[i - 1].fing0 + 2 * (size_t)w->ons[i - 1].nfing * (size_t)w->ons[i - 1].nslots : 0;
    on->nslots = (int)ns;
    on->slot0 = s0;
    GROW(w->slots, w->slots_cap, s0 + (size_t)ns);
    for (Py_ssize_t q = 0; q < ns; q++) {
        PyObject *so = PySequence_Fast_GET_ITEM(sls, q);
        SlotC *d = &w->slots[s0 + q];
        if (get_i64(so, "pick_us", &d->pick) < 0 || get_i64(so, "sound_us", &d->sound) < 0
            || get_i64(so, "end_us", &d->end) < 0 || get_i64(so, "pitch", &d->pitch) < 0)
            goto done;
    }
    fgs = get_seq(o, "fingerings");
    if (!fgs) goto done;
    Py_ssize_t nk = PySequence_Fast_GET_SIZE(fgs);
    if (nk == 0) {
        PyErr_Format(PyExc_IndexError, "onset %zd has no fingering", i);
        goto done;
    }
    on->nfing = (int)nk;
    on->fing0 = f0;
    GROW(w->fings, w->fings_cap, f0 + 2 * (size_t)nk * (size_t)ns);
    for (Py_ssize_t k = 0; k < nk; k++) {
        PyObject *one = PySequence_Fast(PySequence_Fast_GET_ITEM(fgs, k), "a fingering must be a sequence");
        if (!one) goto done;
        if (PySequence_Fast_GET_SIZE(one) != ns) {
            PyErr_Format(PyExc_ValueError, "onset %zd: fingering %zd places %zd notes of %zd", i, k,
                         PySequence_Fast_GET_SIZE(one), ns);
            Py_DECREF(one);
            goto done;
        }
        for (Py_ssize_t q = 0; q < ns; q++) {
            PyObject *pair = PySequence_Fast_GET_ITEM(one, q);
            long long s = -1, f = -1;
            if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2) {
                s = PyLong_AsLongLong(PyTuple_GET_ITEM(pair, 0));
                f = PyLong_AsLongLong(PyTuple_GET_ITEM(pair, 1));
            }
            if (PyErr_Occurred() || s < 0 || s >= n || f < 0 || f >= nf) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError,
                             "onset %zd: fingering %zd: (string, fret) out of range 0..%d, 0..%d",
                             i, k, n - 1, nf - 1);
                Py_DECREF(one);
                goto done;
            }
            w->fings[f0 + 2 * ((size_t)k * ns + q)] = (int32_t)s;
            w->fings[f0 + 2 * ((size_t)k * ns + q) + 1] = (int32_t)f;
        }
        Py_DECREF(one);
    }
    rc = 0;
    goto done;
nomem:
    PyErr_NoMemory();
done:
    Py_DECREF(sls);
    Py_XDECREF(fgs);
    return rc;
}

/* ---------------------------------------------------------------- one onset */

/* fingering._expand_single: the candidates of a one-note onset into w->cands; how many, or -1 */
static Py_ssize_t expand_single(Work *w, const OnsetC *on, double window) {
    const Ctx *cx = &w->cx;
    const SlotC *sl = &w->slots[on->slot0];
    const int32_t *fg = &w->fings[on->fing0];
    const i64 p = sl->pick, sound = sl->sound, end = sl->end;
    const int n = cx->n, kl = w->kl;
    size_t nc = 0;
    /* a lower bound of each fingering's cost, cheapest first: past ``cap``, not computed */
    GROW(w->order, w->order_cap, (size_t)on->nfing);
    int written = 0;
    for (int k = 0; k < on->nfing; k++) {
        int s = fg[2 * k], f = fg[2 * k + 1];
        w->order[k].lb = pull(cx, s, f, sl->pitch);
        w->order[k].k = k; w->order[k].s = s; w->order[k].f = f;
        written += sl->pitch < 0 || cx->pitch_at[(size_t)s * cx->nf + f] == sl->pitch;
    }
    for (int k = 0; k < on->nfing; k++) {
        int s = w->order[k].s, f = w->order[k].f;
        w->order[k].last = written > 1 && sl->pitch >= 0 && cx->pitch_at[(size_t)s * cx->nf + f] != sl->pitch
                           ? cx->transpose_ms : 0.0;
    }
    qsort(w->order, (size_t)on->nfing, sizeof *w->order, order_cmp);
    double cap = INFINITY;
    const double base0 = w->base[0]; /* the lowest: the layer is kept cheapest first */
    for (int q = 0; q < on->nfing; q++) {
        const double lb = w->order[q].lb, last = w->order[q].last, lim = cap - last;
        const int k = w->order[q].k, s = w->order[q].s, f = w->order[q].f;
        if (base0 + lb > lim) {
            if (last != 0.0) continue;
            break;
        }
        double best = INFINITY;
        GROW(w->cands, w->cands_cap, nc + w->L);
        for (size_t j = 0; j < w->L; j++) {
            const int32_t *key = w->keys + j * kl;
            Cand *cd = &w->cands[nc];
            double c, total;
            if (core(cx, w->it.ss + 6 * (size_t)key[s], s, f, p, sound, end, lb, cd->x, &c)) {
                const int32_t m = key[n];
                total = w->base[j] + (c + (m && !(m >> s & 1) ? cx->change : 0.0));
                if (total <= lim) { /* past it, past the window: never kept */
                    cd->cost = total; cd->j = (int32_t)j; cd->k = k; cd->s = s; cd->ref = -1;
                    nc++;
                }
            } else {
                total = w->base[j] + cx->infeasible;
                if (total <= lim) {
                    cd->cost = total; cd->j = (int32_t)j; cd->k = k; cd->s = -1; cd->ref = -1;
                    nc++;
                }
            }
            if (total < best) best = total;
        }
        if (best + window < cap) cap = best + window;
    }
    return (Py_ssize_t)nc;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* fingering._expand_multi: the candidates of a chord into w->cands (their states into
 * w->scratch); how many, or -1 */
static Py_ssize_t expand_multi(Work *w, const OnsetC *on) {
    const Ctx *cx = &w->cx;
    const SlotC *sl = &w->slots[on->slot0];
    const int32_t *fg = &w->fings[on->fing0];
    const int n = cx->n, kl = w->kl, ns = on->nslots;
    size_t nc = 0, nscratch = 0;
    GROW(w->cands, w->cands_cap, w->L * (size_t)on->nfing);
    GROW(w->scratch, w->scratch_cap, w->L * (size_t)on->nfing * kl);
    for (size_t j = 0; j < w->L; j++) {
        const int32_t *state = w->keys + j * kl;
        const int32_t prev = state[n];
        const double c0 = w->base[j];
        for (int k = 0; k < on->nfing; k++) {
            int32_t *lst = w->scratch + nscratch;
            memcpy(lst, state, (size_t)kl * sizeof *lst);
            double cost = 0.0;
            int32_t mask = 0;
            const int32_t *one = fg + 2 * (size_t)k * ns;
            for (int q = 0; q < ns; q++) {
                const int s = one[2 * q], f = one[2 * q + 1];
                const SlotC *so = &sl[q];
                i64 x[6];
                double c;
                if (core(cx, w->it.ss + 6 * (size_t)lst[s], s, f, so->pick, so->sound, so->end,
                         pull(cx, s, f, so->pitch), x, &c)) {
                    int32_t id = it_get(&w->it, x);
                    if (id < 0) goto nomem;
                    lst[s] = id;
                    mask |= (int32_t)1 << s;
                    if (prev && !(prev >> s & 1)) c += cx->change;
                } else {
                    c = cx->infeasible;
                }
                cost += c;
            }
            lst[n] = mask ? mask : prev;
            Cand *cd = &w->cands[nc++];
            cd->cost = c0 + cost; cd->j = (int32_t)j; cd->k = k; cd->s = -1;
            cd->ref = (int32_t)nscratch;
            nscratch += (size_t)kl;
        }
    }
    return (Py_ssize_t)nc;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* the keep loop of fingering._search_py: of the nc candidates (sorted), the cheapest per
 * state (times before ``limit`` folded), at most ``beam`` (none: beam <= 0), none past the
 * cheapest + ``window``, into the next layer; onset i's history; -1: out of memory */
static int keep(Work *w, Py_ssize_t i, size_t nc, long long beam, double window) {
    const int n = w->cx.n, kl = w->kl;
    const double top = w->cands[0].cost + window;
    const i64 limit = w->limits[i];
    const size_t want = beam > 0 && (size_t)beam < nc ? (size_t)beam : nc;
    size_t hcap = 16, kept = 0;
    while (hcap < 2 * want + 2) hcap *= 2;
    GROW(w->hset, w->hset_cap, hcap);
    memset(w->hset, 0, hcap * sizeof *w->hset);
    GROW(w->nkeys, w->nkeys_cap, want * kl);
    GROW(w->nbase, w->nbase_cap, want);
    GROW(w->backs, w->backs_cap, w->hist_n + want);
    GROW(w->ks, w->ks_cap, w->hist_n + want);
    for (size_t q = 0; q < nc; q++) {
        const Cand *cd = &w->cands[q];
        if (cd->cost > top) break;
        int32_t *st = w->nkeys + kept * kl;
        memcpy(st, cd->ref >= 0 ? w->scratch + cd->ref : w->keys + (size_t)cd->j * kl,
               (size_t)kl * sizeof *st);
        if (cd->s >= 0) { /* string s of the state j now x, the mask s alone */
            int32_t xi = it_get(&w->it, cd->x);
            if (xi < 0) goto nomem;
            st[cd->s] = xi;
            st[n] = (int32_t)1 << cd->s;
        }
        for (int y = 0; y < n; y++) {
            if (w->it.last[st[y]] < limit) {
                int32_t f = it_folded(&w->it, st[y]);
                if (f < 0) goto nomem;
                st[y] = f;
            }
        }
        size_t h = hash_key(st, kl) & (hcap - 1);
        int dup = 0;
        while (w->hset[h]) {
            if (!memcmp(w->nkeys + (size_t)(w->hset[h] - 1) * kl, st, (size_t)kl * sizeof *st)) {
                dup = 1;
                break;
            }
            h = (h + 1) & (hcap - 1);
        }
        if (dup) continue;
        w->hset[h] = (int32_t)kept + 1;
        w->nbase[kept] = cd->cost;
        w->backs[w->hist_n + kept] = cd->j;
        w->ks[w->hist_n + kept] = cd->k;
        kept++;
        if (beam > 0 && kept == (size_t)beam) break;
    }
    w->hoff[i] = w->hist_n;
    w->hist_n += kept;
    /* the next layer becomes the layer */
    int32_t *tk = w->keys; w->keys = w->nkeys; w->nkeys = tk;
    size_t tc = w->keys_cap; w->keys_cap = w->nkeys_cap; w->nkeys_cap = tc;
    double *tb = w->base; w->base = w->nbase; w->nbase = tb;
    tc = w->base_cap; w->base_cap = w->nbase_cap; w->nbase_cap = tc;
    w->L = kept;
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* ---------------------------------------------------------------- the search */

static PyObject *search(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *layout, *onsets_obj, *travel_obj, *limits_obj;
    double fret_ms, transpose_ms, cut_w, cut_note, change, infeasible, window;
    long long beam;
    if (!PyArg_ParseTuple(args, "OOOOddddddLd", &layout, &onsets_obj, &travel_obj, &limits_obj,
                          &fret_ms, &transpose_ms, &cut_w, &cut_note, &change, &infeasible, &beam,
                          &window))
        return NULL;
    Work w;
    memset(&w, 0, sizeof w);
    PyObject *onsets = NULL, *lim = NULL, *result = NULL;
    if (read_layout(&w, layout, travel_obj) < 0) goto done;
    w.cx.fret_ms = fret_ms; w.cx.transpose_ms = transpose_ms; w.cx.cut_w = cut_w;
    w.cx.cut_note = cut_note; w.cx.change = change; w.cx.infeasible = infeasible;
    onsets = PySequence_Fast(onsets_obj, "onsets must be a sequence");
    lim = PySequence_Fast(limits_obj, "limits must be a sequence");
    if (!onsets || !lim) goto done;
    w.no = PySequence_Fast_GET_SIZE(onsets);
    if (w.no == 0) {
        result = Py_BuildValue("([]d)", 0.0);
        goto done;
    }
    if (PySequence_Fast_GET_SIZE(lim) != w.no) {
        PyErr_SetString(PyExc_ValueError, "one fold limit per onset");
        goto done;
    }
    w.ons = malloc((size_t)w.no * sizeof *w.ons);
    w.limits = malloc((size_t)w.no * sizeof *w.limits);
    w.hoff = malloc((size_t)w.no * sizeof *w.hoff);
    if (!w.ons || !w.limits || !w.hoff) goto nomem;
    for (Py_ssize_t i = 0; i < w.no; i++) {
        long long x = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(lim, i));
        if (x == -1 && PyErr_Occurred()) goto done;
        w.limits[i] = x;
        if (read_onset(&w, i, PySequence_Fast_GET_ITEM(onsets, i)) < 0) goto done;
    }
    /* the first layer: every string fresh (fingering.FRESH), no previous onset */
    const int n = w.cx.n;
    w.kl = n + 1;
    w.it.tcap = 4096;
    w.it.table = calloc(w.it.tcap, sizeof *w.it.table);
    if (!w.it.table) goto nomem;
    const i64 fresh_ss[6] = {0, -1, NEG, NEG, NEG, 0};
    const int32_t fresh = it_get(&w.it, fresh_ss);
    if (fresh < 0) goto nomem;
    GROW(w.keys, w.keys_cap, (size_t)w.kl);
    GROW(w.base, w.base_cap, 1);
    for (int s = 0; s < n; s++) w.keys[s] = fresh;
    w.keys[n] = 0;
    w.base[0] = 0.0;
    w.L = 1;
    for (Py_ssize_t i = 0; i < w.no; i++) {
        const OnsetC *on = &w.ons[i];
        Py_ssize_t nc = on->nslots == 1 ? expand_single(&w, on, window) : expand_multi(&w, on);
        if (nc < 0) goto done;
        /* (cost, j, k) is unique per candidate, so the order is Python's sort's */
        qsort(w.cands, (size_t)nc, sizeof *w.cands, cand_cmp);
        if (keep(&w, i, (size_t)nc, beam, window) < 0) goto done;
    }
    /* the cheapest state of the last layer (the first of equals), back to the start */
    size_t j = 0;
    for (size_t q = 1; q < w.L; q++) if (w.base[q] < w.base[j]) j = q;
    const double total = w.base[j];
    PyObject *choice = PyList_New(w.no);
    if (!choice) goto done;
    for (Py_ssize_t i = w.no - 1; i >= 0; i--) {
        PyObject *v = PyLong_FromLong(w.ks[w.hoff[i] + j]);
        if (!v) { Py_DECREF(choice); goto done; }
        PyList_SET_ITEM(choice, i, v);
        j = (size_t)w.backs[w.hoff[i] + j];
    }
    result = Py_BuildValue("(Nd)", choice, total);
    goto done;
nomem:
    PyErr_NoMemory();
done:
    Py_XDECREF(onsets);
    Py_XDECREF(lim);
    ws_free(&w);
    return result;
}

static PyMethodDef methods[] = {
    {"search", search, METH_VARARGS,
     "search(layout, onsets, travel, limits, fret_ms, transpose_ms, cut_ms_weight, cut_note_ms, "
     "change_ms, infeasible, beam, window) -> (choice, total): fingering._search_py in C"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fingering_c", "The fingering search in C (fingering._search_py's twin).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fingering_c(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObject(m, "NEG", PyLong_FromLongLong(NEG)) < 0
        || PyModule_AddObject(m, "FOLDED", PyLong_FromLongLong(FOLDED)) < 0
        || PyModule_AddIntConstant(m, "MAX_STRINGS", MAX_STRINGS) < 0
        || PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

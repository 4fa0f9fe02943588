/* The Kineto builder's per-event pass, compiled: one slice's decoded events into the columns of
 * tracekit's five tables. Optional: tracekit/trace/columns.py's Python builder does the same work
 * and is the oracle (tests/test_columns_ext.py compares the two on every committed trace and on
 * generated events). This pass handles the common case only and answers None for anything else
 * (a timestamp that needs a decimal, an id that is a string or a float, an old-style
 * ProfilerStep cpu_op, an event type it does not know): the Python builder then reads that slice,
 * so every rule stays written once, in Python, and this file only ever agrees with it or declines.
 *
 * scan(events, spec, cat_codes, api_names, codes) -> None | (no_ts, unknown, no_dur, bad_args,
 *                                                             tables)
 *   spec       (complete_type, event_type, ph_descr, phase_types, fields, args_type, arg_fields,
 *               cat_code, api_name_code)
 *              fields: member descriptors of cat, name, pid, tid, ts, dur, args;
 *              arg_fields: of correlation, stream, device, bytes;
 *              cat_code(cat) -> int and api_name_code(name) -> int fill the two caches below.
 *   cat_codes  dict cat -> code (a cache; codes as CAT_* below)
 *   api_names  dict name -> launch kind + 1 (0: not a launch) | 8 if a sync call (a cache)
 *   codes      dict name -> uint32 code, extended in table order (gpu, launch, sync, ann, cpu)
 *   tables     five tuples of columns, in columns._SCAN_COLUMNS's order: a bytearray per column,
 *              (bytearray, mask bytearray or None) per id column (the mask only when some id is
 *              unknown); ts and dur as float64 µs (dur NaN where missing)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

enum { CAT_SKIP = 0, CAT_UNKNOWN = 1, CAT_GPU = 2 /* 2..4: + gpu kind */, CAT_API = 5 /* 5, 6 */,
       CAT_API_SYNC = 7, CAT_ANN = 8, CAT_ANN_GPU = 9, CAT_CPU = 10, CAT_MAX = 10 };
enum { T_GPU = 1, T_LAUNCH = 2, T_SYNC = 4, T_ANN = 8, T_CPU = 16 };
enum { F_CAT, F_NAME, F_PID, F_TID, F_TS, F_DUR, F_ARGS, N_FIELDS };
enum { A_CORRELATION, A_STREAM, A_DEVICE, A_BYTES, N_ARGS };

/* below 2**43 µs a float64 still pins the nanosecond (decode.FLOAT_EXACT_US) */
#define FLOAT_EXACT_US 8796093022208.0

static PyObject *profiler_step; /* "ProfilerStep#" */

typedef struct {
    PyTypeObject *complete_type, *event_type, *args_type;
    PyObject *phase_types, *cat_code, *api_name_code;
    Py_ssize_t ph, fields[N_FIELDS], arg_fields[N_ARGS]; /* the fields' slot offsets */
} Spec;

/* A field of a struct, read from its slot (borrowed; NULL if the slot is empty). The offsets come
 * from the structs' member descriptors (parse_spec checks each is a plain object slot of a base
 * of the type read): what the descriptor's __get__ reads, without a call and a reference. */
#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

static int slot_offset(PyObject *descr, PyTypeObject *type, Py_ssize_t *offset) {
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)
        || (((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX
            && ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT)
        || !PyType_IsSubtype(type, PyDescr_TYPE(descr))) {
        PyErr_SetString(PyExc_TypeError, "scan: a field is not an object slot of the struct");
        return -1;
    }
    *offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    return 0;
}

/* the small int a cache dict holds for key, filling it from fn on a miss; -1 on error */
static long cached(PyObject *cache, PyObject *fn, PyObject *key) {
    PyObject *v = PyDict_GetItemWithError(cache, key);
    if (v == NULL) {
        if (PyErr_Occurred())
            return -1;
        v = PyObject_CallOneArg(fn, key);
        if (v == NULL)
            return -1;
        int bad = PyDict_SetItem(cache, key, v);
        long r = PyLong_AsLong(v);
        Py_DECREF(v);
        return bad ? -1 : r;
    }
    return PyLong_AsLong(v);
}

/* an id the fast path reads: None or a plain int (1); anything else declines (0) */
static int plain_id(PyObject *v) { return v == Py_None || PyLong_CheckExact(v); }

/* a plain int within [lo, hi] into *out (1), or unknown (0): None, or an int out of range */
static int id_value(PyObject *v, long long lo, long long hi, int64_t *out) {
    if (v == Py_None)
        return 0;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || x < lo || x > hi)
        return 0;
    *out = x;
    return 1;
}

typedef struct {
    PyObject *values, *mask; /* bytearrays; mask NULL until an unknown is seen */
    Py_ssize_t n;
} IdColumn;

static int id_init(IdColumn *c, Py_ssize_t n) {
    c->mask = NULL;
    c->n = n;
    c->values = PyByteArray_FromStringAndSize(NULL, n * 8);
    return c->values ? 0 : -1;
}

/* row i of an id column: the value, or 0 and False in the mask */
static int id_put(IdColumn *c, Py_ssize_t i, PyObject *v, long long lo, long long hi) {
    int64_t x = 0;
    int known = id_value(v, lo, hi, &x);
    ((int64_t *)PyByteArray_AS_STRING(c->values))[i] = x;
    if (!known && c->mask == NULL) {
        c->mask = PyByteArray_FromStringAndSize(NULL, c->n);
        if (c->mask == NULL)
            return -1;
        memset(PyByteArray_AS_STRING(c->mask), 1, c->n);
    }
    if (c->mask)
        PyByteArray_AS_STRING(c->mask)[i] = (char)known;
    return 0;
}

/* (values, mask or None), stealing the references */
static PyObject *id_pack(IdColumn *c) {
    PyObject *mask = c->mask ? c->mask : Py_NewRef(Py_None);
    return Py_BuildValue("(NN)", c->values, mask);
}

static int parse_spec(PyObject *spec, Spec *s) {
    PyObject *ph, *fields, *arg_fields;
    if (!PyArg_ParseTuple(spec, "O!O!OOOO!OOO", &PyType_Type, &s->complete_type, &PyType_Type,
                          &s->event_type, &ph, &s->phase_types, &fields, &PyType_Type,
                          &s->args_type, &arg_fields, &s->cat_code, &s->api_name_code))
        return -1;
    if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != N_FIELDS
        || !PyTuple_Check(arg_fields) || PyTuple_GET_SIZE(arg_fields) != N_ARGS
        || !PyAnySet_Check(s->phase_types)) {
        PyErr_SetString(PyExc_TypeError, "scan: malformed spec");
        return -1;
    }
    if (slot_offset(ph, s->event_type, &s->ph) < 0)
        return -1;
    for (int i = 0; i < N_FIELDS; i++)
        if (slot_offset(PyTuple_GET_ITEM(fields, i), s->complete_type, &s->fields[i]) < 0
            || slot_offset(PyTuple_GET_ITEM(fields, i), s->event_type, &s->fields[i]) < 0)
            return -1;
    for (int i = 0; i < N_ARGS; i++)
        if (slot_offset(PyTuple_GET_ITEM(arg_fields, i), s->args_type, &s->arg_fields[i]) < 0)
            return -1;
    return 0;
}

/* An event's args struct (borrowed), or NULL for none: None, or not an object (counted in *bad
 * when bad is given, as the Python builder counts the GPU ops' and launches'). */
static PyObject *args_of(Spec *s, PyObject *args, long *bad) {
    if (Py_TYPE(args) == s->args_type)
        return args;
    if (args != Py_None && bad)
        (*bad)++;
    return NULL;
}

/* an args field (borrowed), None when there are no args; NULL for an empty slot */
static PyObject *arg(Spec *s, PyObject *args, int field) {
    return args ? SLOT(args, s->arg_fields[field]) : Py_None;
}

/* Pass 1: each event's tables (bits of T_*) into flags, its category code and launch kind into
 * aux, the rows per table into counts, the counters; 1 when the whole slice is the fast path's,
 * 0 when it declines, -1 on error. Nothing outside this call changes before it returns 1 but
 * the two caches (pure functions of their keys): a declined slice leaves the builder as it was. */
static int classify(Spec *s, PyObject *events, PyObject *cat_codes, PyObject *api_names,
                    uint8_t *flags, uint8_t *aux, Py_ssize_t counts[5], long *no_ts,
                    PyObject *unknown) {
    Py_ssize_t n = PyList_GET_SIZE(events);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyList_GET_ITEM(events, i);
        PyTypeObject *t = Py_TYPE(e);
        flags[i] = aux[i] = 0;
        if (t == s->event_type) {
            PyObject *ph = SLOT(e, s->ph);
            if (ph == NULL)
                return 0;
            if (!PyUnicode_Check(ph) || PyUnicode_CompareWithASCIIString(ph, "X") != 0)
                continue;
        } else if (t != s->complete_type) {
            int phase = PySet_Contains(s->phase_types, (PyObject *)t);
            if (phase <= 0)
                return phase;
            continue;
        }
        PyObject *v[N_FIELDS];
        for (int f = 0; f < N_FIELDS; f++)
            if ((v[f] = SLOT(e, s->fields[f])) == NULL)
                return 0;
        if (v[F_TS] == Py_None) {
            (*no_ts)++;
            continue;
        }
        if (v[F_CAT] == Py_None)
            continue;
        long code = cached(cat_codes, s->cat_code, v[F_CAT]), launch = 0;
        if (code < 0)
            return PyErr_Occurred() ? -1 : 0;
        if (code > CAT_MAX)
            return 0;
        if (code == CAT_UNKNOWN) {
            PyObject *c = PyDict_GetItemWithError(unknown, v[F_CAT]);
            if (c == NULL && PyErr_Occurred())
                return -1;
            PyObject *k = PyLong_FromLong(c ? PyLong_AsLong(c) + 1 : 1);
            int bad = k == NULL || PyDict_SetItem(unknown, v[F_CAT], k) < 0;
            Py_XDECREF(k);
            if (bad)
                return -1;
            continue;
        }
        if (code == CAT_SKIP)
            continue;
        /* a table's event: what the Python builder would read, checked to be the common case */
        if (!PyFloat_CheckExact(v[F_TS]) || !(PyFloat_AS_DOUBLE(v[F_TS]) < FLOAT_EXACT_US)
            || !(v[F_DUR] == Py_None || PyFloat_CheckExact(v[F_DUR]))
            || !PyUnicode_CheckExact(v[F_NAME]))
            return 0;
        uint8_t fl = 0;
        if (code < CAT_API) {
            fl = T_GPU;
            PyObject *a = args_of(s, v[F_ARGS], NULL), *av[N_ARGS];
            for (int f = 0; f < N_ARGS; f++)
                if ((av[f] = arg(s, a, f)) == NULL)
                    return 0;
            if (!plain_id(av[A_CORRELATION]) || !plain_id(av[A_BYTES])
                || !plain_id(av[A_DEVICE] != Py_None ? av[A_DEVICE] : v[F_PID])
                || !plain_id(av[A_STREAM] != Py_None ? av[A_STREAM] : v[F_TID]))
                return 0;
        } else if (code <= CAT_API_SYNC) {
            long nm = cached(api_names, s->api_name_code, v[F_NAME]);
            if (nm < 0)
                return PyErr_Occurred() ? -1 : 0;
            if (code != CAT_API_SYNC && (nm & 7)) {
                fl |= T_LAUNCH;
                launch = nm & 7;
            }
            if (code == CAT_API_SYNC || (nm & 8))
                fl |= T_SYNC;
            if (fl && !plain_id(v[F_TID]))
                return 0;
            if (fl & T_LAUNCH) {
                PyObject *c = arg(s, args_of(s, v[F_ARGS], NULL), A_CORRELATION);
                if (c == NULL || !plain_id(c))
                    return 0;
            }
        } else {
            fl = code == CAT_CPU ? T_CPU : T_ANN;
            if (!plain_id(v[F_TID]))
                return 0;
            /* before ~2023 ProfilerStep#N was a cpu_op: the Python builder makes it an annotation */
            if (code == CAT_CPU) {
                Py_ssize_t old = PyUnicode_Tailmatch(v[F_NAME], profiler_step, 0, PY_SSIZE_T_MAX, -1);
                if (old)
                    return old < 0 ? -1 : 0;
            }
        }
        flags[i] = fl;
        aux[i] = (uint8_t)(code | (launch << 4));
        for (int k = 0; k < 5; k++)
            counts[k] += (fl >> k) & 1;
    }
    return 1;
}

/* a name's code in the one dictionary of names: its code, or the next one when it is new */
static int name_code(PyObject *codes, PyObject *name, uint32_t *out) {
    PyObject *c = PyDict_GetItemWithError(codes, name);
    if (c != NULL) {
        *out = (uint32_t)PyLong_AsUnsignedLong(c);
        return PyErr_Occurred() ? -1 : 0;
    }
    if (PyErr_Occurred())
        return -1;
    Py_ssize_t n = PyDict_GET_SIZE(codes);
    if ((c = PyLong_FromSsize_t(n)) == NULL)
        return -1;
    int r = PyDict_SetItem(codes, name, c);
    Py_DECREF(c);
    *out = (uint32_t)n;
    return r;
}

#define COL(ba, type) ((type *)PyByteArray_AS_STRING(ba))
#define I64 LLONG_MIN, LLONG_MAX /* the [lo, hi] an id column holds */
#define I32 (-2147483647LL - 1), 2147483647LL

/* Pass 2: one table's columns (its rows: the events with flag bit), names coded in row order.
 * Returns the tuple of columns, or NULL on error. */
static PyObject *table(Spec *s, PyObject *events, const uint8_t *flags, const uint8_t *aux,
                       uint8_t bit, Py_ssize_t rows, PyObject *codes, long *no_dur, long *bad) {
    PyObject *name = PyByteArray_FromStringAndSize(NULL, rows * 4);
    PyObject *ts = PyByteArray_FromStringAndSize(NULL, rows * 8);
    PyObject *dur = PyByteArray_FromStringAndSize(NULL, rows * 8);
    PyObject *kind = PyByteArray_FromStringAndSize(NULL, rows); /* gpu kind; launch kind; on_gpu */
    PyObject *api = PyByteArray_FromStringAndSize(NULL, rows);
    IdColumn id[4] = {{NULL, NULL, 0}}; /* gpu: device, stream, correlation, bytes;
                                           launch: tid, correlation; others: tid */
    int n_ids = bit == T_GPU ? 4 : bit == T_LAUNCH ? 2 : 1;
    int ok = name && ts && dur && kind && api;
    for (int k = 0; ok && k < n_ids; k++)
        ok = id_init(&id[k], rows) == 0;
    Py_ssize_t n = PyList_GET_SIZE(events), row = 0;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        if (!(flags[i] & bit))
            continue;
        PyObject *e = PyList_GET_ITEM(events, i), *v[N_FIELDS];
        for (int f = 0; f < N_FIELDS; f++)
            v[f] = SLOT(e, s->fields[f]); /* pass 1 found each set */
        uint32_t code = 0;
        ok = name_code(codes, v[F_NAME], &code) == 0;
        COL(name, uint32_t)[row] = code;
        COL(ts, double)[row] = PyFloat_AS_DOUBLE(v[F_TS]);
        if (v[F_DUR] == Py_None) {
            COL(dur, double)[row] = NAN;
            if (bit == T_GPU)
                (*no_dur)++;
        } else {
            COL(dur, double)[row] = PyFloat_AS_DOUBLE(v[F_DUR]);
        }
        uint8_t cat = aux[i] & 15;
        if (ok && bit == T_GPU) {
            PyObject *a = args_of(s, v[F_ARGS], bad), *device = arg(s, a, A_DEVICE),
                     *stream = arg(s, a, A_STREAM);
            COL(kind, uint8_t)[row] = cat - CAT_GPU;
            ok = id_put(&id[0], row, device != Py_None ? device : v[F_PID], I32) == 0
                 && id_put(&id[1], row, stream != Py_None ? stream : v[F_TID], I64) == 0
                 && id_put(&id[2], row, arg(s, a, A_CORRELATION), I64) == 0
                 && id_put(&id[3], row, arg(s, a, A_BYTES), I64) == 0;
        } else if (ok && bit == T_LAUNCH) {
            PyObject *a = args_of(s, v[F_ARGS], bad);
            COL(kind, uint8_t)[row] = (aux[i] >> 4) - 1;
            COL(api, uint8_t)[row] = cat - CAT_API;
            ok = id_put(&id[0], row, v[F_TID], I64) == 0
                 && id_put(&id[1], row, arg(s, a, A_CORRELATION), I64) == 0;
        } else if (ok) {
            COL(kind, uint8_t)[row] = cat == CAT_ANN_GPU;
            ok = id_put(&id[0], row, v[F_TID], I64) == 0;
        }
        row++;
    }
    if (!ok) {
        Py_XDECREF(name); Py_XDECREF(ts); Py_XDECREF(dur); Py_XDECREF(kind); Py_XDECREF(api);
        for (int k = 0; k < 4; k++) {
            Py_XDECREF(id[k].values);
            Py_XDECREF(id[k].mask);
        }
        return NULL;
    }
    switch (bit) {
    case T_GPU:
        Py_DECREF(api);
        return Py_BuildValue("(NNNNNNNN)", name, ts, dur, kind, id_pack(&id[0]), id_pack(&id[1]),
                             id_pack(&id[2]), id_pack(&id[3]));
    case T_LAUNCH:
        return Py_BuildValue("(NNNNNNN)", name, ts, dur, kind, api, id_pack(&id[0]),
                             id_pack(&id[1]));
    case T_ANN:
        Py_DECREF(api);
        return Py_BuildValue("(NNNNN)", name, ts, dur, kind, id_pack(&id[0]));
    default:
        Py_DECREF(api);
        Py_DECREF(kind);
        return Py_BuildValue("(NNNN)", name, ts, dur, id_pack(&id[0]));
    }
}

static PyObject *scan(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *events, *spec, *cat_codes, *api_names, *codes;
    Spec s;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!", &PyList_Type, &events, &PyTuple_Type, &spec,
                          &PyDict_Type, &cat_codes, &PyDict_Type, &api_names, &PyDict_Type, &codes)
        || parse_spec(spec, &s) < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(events), counts[5] = {0, 0, 0, 0, 0};
    long no_ts = 0, no_dur = 0, bad = 0;
    uint8_t *flags = PyMem_Malloc(n ? 2 * n : 1);
    PyObject *unknown = PyDict_New(), *tables = PyTuple_New(5), *out = NULL;
    if (flags == NULL || unknown == NULL || tables == NULL) {
        PyErr_NoMemory();
        goto end;
    }
    int r = classify(&s, events, cat_codes, api_names, flags, flags + n, counts, &no_ts, unknown);
    if (r < 0)
        goto end;
    if (r == 0) {
        out = Py_NewRef(Py_None);
        goto end;
    }
    static const uint8_t bits[5] = {T_GPU, T_LAUNCH, T_SYNC, T_ANN, T_CPU};
    for (int k = 0; k < 5; k++) {
        PyObject *t = table(&s, events, flags, flags + n, bits[k], counts[k], codes, &no_dur, &bad);
        if (t == NULL)
            goto end;
        PyTuple_SET_ITEM(tables, k, t);
    }
    out = Py_BuildValue("(lOllO)", no_ts, unknown, no_dur, bad, tables);
end:
    PyMem_Free(flags);
    Py_XDECREF(unknown);
    Py_XDECREF(tables);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "One slice's events into the columns of tracekit's tables, or "
                                 "None where the Python builder must read it (see columns.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_columns", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__columns(void) {
    if (profiler_step == NULL && (profiler_step = PyUnicode_InternFromString("ProfilerStep#")) == NULL)
        return NULL;
    return PyModule_Create(&module);
}

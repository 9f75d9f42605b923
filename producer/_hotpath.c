/* The common case of `run.log(name, value, step)` in C, and the run's state it works on.
 *
 * A `log()` call comes right after a training step, when the CPU's caches hold the model, not
 * Python's objects: each bytecode and object it touches costs a cache miss. `FastLog` does the
 * common case (a name already checked, a float, no step or a plain int step in range, a producer
 * that is open) without running Python code, with the same effects as the Python path in
 * `producer/_base.py` (`log`, `_step_for`), `schemas/_fast.py` (`MetricsWriter.encode_one`) and
 * `producer/_intake.py` (`Intake.submit`). Anything else returns False before any effect, and the
 * Python path takes the call: it raises the errors, so they are written once.
 *
 * It reads and writes two objects only: the run's `LogState` (defined here, the C twin of
 * `PyLogState` in `producer/_hotstate.py`; C reads its fields, Python its members and methods)
 * and the session's `Intake`, by the public names `producer/_intake.py` documents.
 *
 * A change to any of those Python functions must be made here too;
 * tests/unit/test_producer_hotpath.py holds the two paths to the same events and state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>
#include <time.h>

/* -- LogState: what every log() reads and changes ------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *names;             /* set: names already checked */
    PyObject *steps;             /* dict: name -> the step an omitted step continues from */
    long long max_step;          /* the highest step logged, -1 before any */
    unsigned long long next_seq; /* the producer session's next seq number */
} LogState;

static PyObject *
logstate_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "LogState() takes no arguments");
        return NULL;
    }
    LogState *self = (LogState *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->names = PySet_New(NULL);
    self->steps = PyDict_New();
    if (self->names == NULL || self->steps == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->max_step = -1;
    self->next_seq = 0;
    return (PyObject *)self;
}

static PyObject *
logstate_next_seq(LogState *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(self->next_seq++);
}

static PyObject *
logstate_new_session(LogState *self, PyObject *Py_UNUSED(ignored))
{
    self->next_seq = 0;
    Py_RETURN_NONE;
}

static int
logstate_traverse(LogState *self, visitproc visit, void *arg)
{
    Py_VISIT(self->names);
    Py_VISIT(self->steps);
    return 0;
}

static int
logstate_clear(LogState *self)
{
    Py_CLEAR(self->names);
    Py_CLEAR(self->steps);
    return 0;
}

static void
logstate_dealloc(LogState *self)
{
    PyObject_GC_UnTrack(self);
    logstate_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef logstate_methods[] = {
    {"next_seq", (PyCFunction)logstate_next_seq, METH_NOARGS,
     PyDoc_STR("The session's next seq number (0, 1, 2...); each call takes one.")},
    {"new_session", (PyCFunction)logstate_new_session, METH_NOARGS,
     PyDoc_STR("A new producer session: seq numbers start again at 0.")},
    {NULL},
};

static PyMemberDef logstate_members[] = {
    {"names", T_OBJECT_EX, offsetof(LogState, names), READONLY, "set: names already checked"},
    {"steps", T_OBJECT_EX, offsetof(LogState, steps), READONLY,
     "dict: name -> the step an omitted step continues from"},
    {"max_step", T_LONGLONG, offsetof(LogState, max_step), 0,
     "the highest step logged, -1 before any"},
    {NULL},
};

static PyTypeObject LogStateType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runstream.producer._hotpath.LogState",
    .tp_doc = PyDoc_STR("LogState() -> what every run.log() reads and changes (see "
                        "producer/_hotstate.py)."),
    .tp_basicsize = sizeof(LogState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = logstate_new,
    .tp_traverse = (traverseproc)logstate_traverse,
    .tp_clear = (inquiry)logstate_clear,
    .tp_dealloc = (destructor)logstate_dealloc,
    .tp_methods = logstate_methods,
    .tp_members = logstate_members,
};

/* -- FastLog: the common log() ---------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    LogState *state;          /* the run's */
    PyObject *writer;         /* MetricsWriter, for `encode_name` on a name it has not cached */
    PyObject *encoded;        /* dict: name -> Avro string bytes (the writer's cache) */
    PyObject *head;           /* bytes: the writer's envelope head */
    PyObject *branch;         /* bytes: the Metrics union branch */
    PyObject *intake;         /* Intake: `closing`, `dozing`, `wake_up`, `spill` */
    PyObject *pending;        /* list: the intake's `pending` */
    Py_ssize_t memory_events; /* the intake's `memory_events` */
} FastLog;

#define NOT_MINE (-2) /* a step the Python path must take */

static PyObject *s_closing, *s_dozing, *s_wake_up, *s_spill, *s_pending, *s_memory_events,
    *s_encode_name;

static int
put_varint(unsigned char *out, uint64_t n)
{
    int i = 0;
    while (n >= 0x80) {
        out[i++] = (unsigned char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    out[i++] = (unsigned char)n;
    return i;
}

/* 1 when `intake.<attr>` is True, 0 when not, -1 on error. */
static int
flag(PyObject *intake, PyObject *attr)
{
    PyObject *value = PyObject_GetAttr(intake, attr);
    if (value == NULL) {
        return -1;
    }
    int set = PyObject_IsTrue(value);
    Py_DECREF(value);
    return set;
}

/* The step to log `name` at: `step_obj`, or the name's own count when None. NOT_MINE when the
 * Python path must take it (it raises what is wrong), -1 on error. */
static long long
step_for(LogState *state, PyObject *name, PyObject *step_obj)
{
    if (step_obj == Py_None) {
        PyObject *next = PyDict_GetItemWithError(state->steps, name);
        if (next == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        long long step = PyLong_AsLongLong(next);
        if (step == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return NOT_MINE;
        }
        return step;
    }
    if (!PyLong_CheckExact(step_obj)) {
        return NOT_MINE;
    }
    int overflow = 0;
    long long step = PyLong_AsLongLongAndOverflow(step_obj, &overflow);
    if (step == -1 && PyErr_Occurred()) {
        return -1;
    }
    return overflow || step < 0 ? NOT_MINE : step;
}

/* `_step_for`'s effects: the name's count goes on, the highest step is kept. 0, or -1 on error. */
static int
count_step(LogState *state, PyObject *name, long long step)
{
    PyObject *next_step = PyLong_FromUnsignedLongLong((unsigned long long)step + 1);
    if (next_step == NULL) {
        return -1;
    }
    int set = PyDict_SetItem(state->steps, name, next_step);
    Py_DECREF(next_step);
    if (set < 0) {
        return -1;
    }
    if (step > state->max_step) {
        state->max_step = step;
    }
    return 0;
}

/* The Avro string of `name`: from the writer's cache, or made (and cached) by the writer. */
static PyObject *
encoded_name(FastLog *self, PyObject *name)
{
    PyObject *encoded = PyDict_GetItemWithError(self->encoded, name);
    if (encoded != NULL) {
        return Py_NewRef(encoded);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    encoded = PyObject_CallMethodOneArg(self->writer, s_encode_name, name);
    if (encoded != NULL && !PyBytes_Check(encoded)) {
        Py_DECREF(encoded);
        PyErr_SetString(PyExc_TypeError, "MetricsWriter.encode_name must return bytes");
        return NULL;
    }
    return encoded;
}

/* `MetricsWriter.encode_one`: the single-object encoding of a Metrics event of one value. */
static PyObject *
encode_one(FastLog *self, unsigned long long seq, long long step, PyObject *name, double value)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t time_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    PyObject *encoded = encoded_name(self, name);
    if (encoded == NULL) {
        return NULL;
    }
    unsigned char numbers[40];
    int seq_len = put_varint(numbers, (uint64_t)seq << 1);
    int time_len = put_varint(numbers + seq_len, (uint64_t)time_us << 1);
    int step_len = put_varint(numbers + seq_len + time_len, (uint64_t)step << 1);
    Py_ssize_t head_len = PyBytes_GET_SIZE(self->head);
    Py_ssize_t branch_len = PyBytes_GET_SIZE(self->branch);
    Py_ssize_t name_len = PyBytes_GET_SIZE(encoded);
    Py_ssize_t total = head_len + seq_len + time_len + branch_len + step_len + 1 + name_len + 8 + 1;
    PyObject *payload = PyBytes_FromStringAndSize(NULL, total);
    if (payload == NULL) {
        Py_DECREF(encoded);
        return NULL;
    }
    char *out = PyBytes_AS_STRING(payload);
    memcpy(out, PyBytes_AS_STRING(self->head), head_len);
    out += head_len;
    memcpy(out, numbers, seq_len + time_len);
    out += seq_len + time_len;
    memcpy(out, PyBytes_AS_STRING(self->branch), branch_len);
    out += branch_len;
    memcpy(out, numbers + seq_len + time_len, step_len);
    out += step_len;
    *out++ = 0x02; /* one item in the array block */
    memcpy(out, PyBytes_AS_STRING(encoded), name_len);
    out += name_len;
    Py_DECREF(encoded);
    if (PyFloat_Pack8(value, out, 1) < 0) {
        Py_DECREF(payload);
        return NULL;
    }
    out[8] = 0x00; /* end of the array */
    return payload;
}

/* `Intake.submit` of an event that is not final (the caller saw `closing` False). */
static int
submit(FastLog *self, PyObject *payload)
{
    if (PyList_Append(self->pending, payload) < 0) {
        return -1;
    }
    int dozing = flag(self->intake, s_dozing);
    if (dozing < 0) {
        return -1;
    }
    if (dozing) {
        PyObject *done = PyObject_CallMethodNoArgs(self->intake, s_wake_up);
        if (done == NULL) {
            return -1;
        }
        Py_DECREF(done);
    }
    if (PyList_GET_SIZE(self->pending) > self->memory_events) {
        PyObject *done = PyObject_CallMethodNoArgs(self->intake, s_spill);
        if (done == NULL) {
            return -1;
        }
        Py_DECREF(done);
    }
    return 0;
}

/* (name, value, step) -> True when logged; False, with nothing done, for the Python path. */
static PyObject *
fastlog_vectorcall(FastLog *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "FastLog takes (name, value, step) by position");
        return NULL;
    }
    PyObject *name = args[0], *value = args[1];
    if (!PyUnicode_CheckExact(name) || !PyFloat_CheckExact(value)) {
        Py_RETURN_FALSE;
    }
    LogState *state = self->state;
    int known = PySet_Contains(state->names, name);
    if (known <= 0) {
        if (known < 0) {
            return NULL;
        }
        Py_RETURN_FALSE;
    }
    long long step = step_for(state, name, args[2]);
    if (step < 0) {
        if (step == NOT_MINE) {
            Py_RETURN_FALSE;
        }
        return NULL;
    }
    int closing = flag(self->intake, s_closing);
    if (closing != 0) {
        if (closing < 0) {
            return NULL;
        }
        Py_RETURN_FALSE; /* the Python path raises ClosedError */
    }
    /* No way back from here: the same effects as the Python path, in its order. */
    if (count_step(state, name, step) < 0) {
        return NULL;
    }
    unsigned long long seq = state->next_seq++;
    PyObject *payload = encode_one(self, seq, step, name, PyFloat_AS_DOUBLE(value));
    if (payload == NULL) {
        return NULL;
    }
    int submitted = submit(self, payload);
    Py_DECREF(payload);
    if (submitted < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

/* The intake's `pending` list and `memory_events` limit: 0, or -1 on error. */
static int
intake_parts(PyObject *intake, PyObject **pending, Py_ssize_t *memory_events)
{
    *pending = PyObject_GetAttr(intake, s_pending);
    if (*pending == NULL) {
        return -1;
    }
    if (!PyList_CheckExact(*pending)) {
        Py_CLEAR(*pending);
        PyErr_SetString(PyExc_TypeError, "intake.pending must be a list");
        return -1;
    }
    PyObject *limit = PyObject_GetAttr(intake, s_memory_events);
    *memory_events = limit == NULL ? -1 : PyLong_AsSsize_t(limit);
    Py_XDECREF(limit);
    if (*memory_events == -1 && PyErr_Occurred()) {
        Py_CLEAR(*pending);
        return -1;
    }
    return 0;
}

static int
fastlog_init(FastLog *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"state", "writer", "encoded", "head", "branch", "intake", NULL};
    PyObject *state, *writer, *encoded, *head, *branch, *intake, *pending;
    Py_ssize_t memory_events;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$O!OO!O!O!O:FastLog", keywords,
                                     &LogStateType, &state, &writer, &PyDict_Type, &encoded,
                                     &PyBytes_Type, &head, &PyBytes_Type, &branch, &intake)) {
        return -1;
    }
    if (intake_parts(intake, &pending, &memory_events) < 0) {
        return -1;
    }
    Py_XSETREF(self->state, (LogState *)Py_NewRef(state));
    Py_XSETREF(self->writer, Py_NewRef(writer));
    Py_XSETREF(self->encoded, Py_NewRef(encoded));
    Py_XSETREF(self->head, Py_NewRef(head));
    Py_XSETREF(self->branch, Py_NewRef(branch));
    Py_XSETREF(self->intake, Py_NewRef(intake));
    Py_XSETREF(self->pending, pending);
    self->memory_events = memory_events;
    self->vectorcall = (vectorcallfunc)fastlog_vectorcall;
    return 0;
}

static int
fastlog_traverse(FastLog *self, visitproc visit, void *arg)
{
    Py_VISIT(self->state);
    Py_VISIT(self->writer);
    Py_VISIT(self->encoded);
    Py_VISIT(self->head);
    Py_VISIT(self->branch);
    Py_VISIT(self->intake);
    Py_VISIT(self->pending);
    return 0;
}

static int
fastlog_clear(FastLog *self)
{
    Py_CLEAR(self->state);
    Py_CLEAR(self->writer);
    Py_CLEAR(self->encoded);
    Py_CLEAR(self->head);
    Py_CLEAR(self->branch);
    Py_CLEAR(self->intake);
    Py_CLEAR(self->pending);
    return 0;
}

static void
fastlog_dealloc(FastLog *self)
{
    PyObject_GC_UnTrack(self);
    fastlog_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FastLogType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "runstream.producer._hotpath.FastLog",
    .tp_doc = PyDoc_STR("FastLog(*, state, writer, encoded, head, branch, intake)(name, value, "
                        "step) -> True when logged, False when the Python path must take the "
                        "call (nothing done then)."),
    .tp_basicsize = sizeof(FastLog),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = PyType_GenericNew, /* a call before __init__ raises: no vectorcall yet */
    .tp_init = (initproc)fastlog_init,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(FastLog, vectorcall),
    .tp_traverse = (traverseproc)fastlog_traverse,
    .tp_clear = (inquiry)fastlog_clear,
    .tp_dealloc = (destructor)fastlog_dealloc,
};

/* -- the module ------------------------------------------------------------------------------- */

static struct PyModuleDef hotpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "runstream.producer._hotpath",
    .m_doc = PyDoc_STR("The common case of run.log() in C (see producer/_hotstate.py)."),
    .m_size = -1,
};

static int
intern_names(void)
{
    s_closing = PyUnicode_InternFromString("closing");
    s_dozing = PyUnicode_InternFromString("dozing");
    s_wake_up = PyUnicode_InternFromString("wake_up");
    s_spill = PyUnicode_InternFromString("spill");
    s_pending = PyUnicode_InternFromString("pending");
    s_memory_events = PyUnicode_InternFromString("memory_events");
    s_encode_name = PyUnicode_InternFromString("encode_name");
    return s_closing && s_dozing && s_wake_up && s_spill && s_pending && s_memory_events &&
                   s_encode_name
               ? 0
               : -1;
}

PyMODINIT_FUNC
PyInit__hotpath(void)
{
    if (PyType_Ready(&LogStateType) < 0 || PyType_Ready(&FastLogType) < 0 || intern_names() < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&hotpath_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "LogState", (PyObject *)&LogStateType) < 0 ||
        PyModule_AddObjectRef(module, "FastLog", (PyObject *)&FastLogType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

/*
** pool.h: the engine's thread pool.
**
** Created once per model with n threads (the caller's thread is worker 0, so
** n - 1 threads are started). pool_run(p, fn, arg) calls fn(arg, ith, nth)
** on every worker, ith = 0 .. nth-1, and returns when all have finished.
** Work is split by index, never by timing, so results do not depend on the
** number of threads or on scheduling.
*/
#ifndef KB_POOL_H
#define KB_POOL_H

typedef void (*PoolFn)(void *arg, int ith, int nth);

typedef struct Pool Pool;

/* Starts n_threads - 1 workers (n_threads >= 1). Returns KB_OK, KB_ENOMEM,
** or KB_EIO when a thread cannot be created. */
int pool_new(int n_threads, Pool **out /* OUT */);
/* Stops and joins the workers; pool_free(NULL) is a no-op. */
void pool_free(Pool *p);
int pool_size(const Pool *p);
/* Runs fn on all workers and waits for them. Not reentrant. */
void pool_run(Pool *p, PoolFn fn, void *arg);

#endif /* KB_POOL_H */

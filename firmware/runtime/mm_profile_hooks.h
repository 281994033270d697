/* Per-layer profiling hooks for the generated model.c (build it with -include mm_profile_hooks.h).
 *
 * The counts telescope: MM_LAYER_END(i) adds the ticks since the previous mark to layer i and moves
 * the mark, so the layers of one model_invoke_range() add up exactly to (last END - start mark).
 * Whoever invokes the model sets mm_prof_mark = mm_timer_now() right before the call (mm_protocol.c
 * does). Harmless in files that use neither macro: declarations only. */
#ifndef MM_PROFILE_HOOKS_H
#define MM_PROFILE_HOOKS_H
#include <stdint.h>

uint32_t mm_timer_now(void);

extern uint32_t mm_prof_ticks[]; /* one per layer, defined (sized MODEL_NUM_LAYERS) in mm_protocol.c */
extern uint32_t mm_prof_mark;    /* timer value at the end of the previous layer (or invoke start) */

#define MM_LAYER_BEGIN(i) ((void)0)
#define MM_LAYER_END(i)                                                                                      \
    do {                                                                                                     \
        uint32_t mm_prof_now_ = mm_timer_now();                                                              \
        mm_prof_ticks[(i)] += mm_prof_now_ - mm_prof_mark;                                                   \
        mm_prof_mark = mm_prof_now_;                                                                         \
    } while (0)

#endif

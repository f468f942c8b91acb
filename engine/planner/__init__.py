"""Planning: schedule IR, generators, event-driven simulator, adaptation rule, ILP. No torch.

Inputs: ``ir`` (ops and schedules), ``costs`` (per-stage costs), ``links`` (per-link delays,
``a_b=MS`` parsing). Timing: ``replay`` (dataflow replay of per-stage orders), ``simulate``
(its metrics: ``SimResult``), ``policy`` (the event-driven greedy B > F > W policy, optionally
with a fixed warm-up, and GPipe's F > B > W), ``activations`` (the activation cap's
accounting). Planning: ``adapt`` (PipeMorph's warm-up rule), ``generators`` (``generate``:
1f1b, zb, greedy, pipemorph, pipemorph+, gpipe; each under an optional activation cap),
``improve`` (pipemorph+'s search), ``ilp`` (the optimum), ``validate``. Around them:
``scenario`` (what ``pmctl simulate`` runs), ``schedule_file`` (a plan given as text),
``instances`` (seeded random instances), ``timeline_text`` (terminal timeline).
"""

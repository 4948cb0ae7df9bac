"""Admission: who is calling and what they may ask, decided once for every transport.

A transport decodes its request into plain values (headers, parameters, body bytes)
and calls these modules; they answer with typed values or raise the same
``TidingsError`` whatever the transport:

* ``actions``: the name of every API action (Zaqar's WebSocket names where it has them);
* ``identity``: the caller (Client-ID, project, roles) and signed URLs;
* ``policy``: which actions are offered and who may run them (``admin_mode``);
* ``params``: typed parameters from strings or JSON values;
* ``requests``: each action's parameters as a typed request (paging, ``pop``/``ids``,
  metadata filters);
* ``bodies``: how much body each action reads, and the one JSON decoder;
* ``gate``: ``admit()``, the entry point a transport calls once per request.
"""

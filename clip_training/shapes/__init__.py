"""The seeded synthetic shapes-and-colours data set the demo model learns from: ``synthetic`` writes the
splits, ``scenes`` draws one varied picture from ``outlines``, ``backgrounds`` and ``palette``, and
``templates`` words its captions."""

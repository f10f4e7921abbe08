"""A pipeline's topology: one module per stage, one demand object shared by all.

- :mod:`.producer_stage`: fetch loops, with the demand and the rate limit;
- :mod:`.processor_stage`: ``prepare_messages`` and ``handle_message``, by partition;
- :mod:`.batcher_stage`: batches cut by size, timeout or flush;
- :mod:`.batch_processor_stage`: ``handle_batch``;
- :mod:`.acker`: ``handle_failed`` and exactly-once acknowledgements;
- :mod:`.demand`: what the stages hold and what the producers are asked for;
- :mod:`.topology`: the stages wired, started and stopped in order.
"""

from underway.pipelines._topology.demand import Demand
from underway.pipelines._topology.topology import Topology

__all__ = ["Demand", "Topology"]

-- {notify-seq, earliest due time owed or ''}: lets a taker check its view is current.
return {notify_seq(), earliest_due()}
